#!/usr/bin/env python
"""Re-execute notebooks in place and store their outputs (what `make notebooks` runs).

    python tools/execute_notebooks.py chapters solutions          # folders or .ipynb files

Each notebook runs top to bottom in a fresh kernel from its own folder, as nbval will run it.
Execution metadata (timestamps) is dropped so that a re-run changes only what really changed,
and the stamped badge and install cell are refreshed first (`vitcourse stamp`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitcourse.course.stamp import read_repository, stamp_notebook  # noqa: E402


def _strip_execution_metadata(nb) -> None:
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                output.get("metadata", {}).pop("execution", None)


def execute(path: Path, timeout: int) -> float:
    """Run ``path`` in place; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    repo_url, branch = read_repository(ROOT)
    stamp_notebook(nb, path.resolve().relative_to(ROOT).as_posix(), repo_url, branch)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    _strip_execution_metadata(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks or folders of notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    notebooks = []
    for path in args.paths:
        notebooks.extend(sorted(path.rglob("*.ipynb")) if path.is_dir() else [path])
    notebooks = [p for p in notebooks if ".ipynb_checkpoints" not in p.parts]
    for path in notebooks:
        print(f"{path}: ", end="", flush=True)
        print(f"{execute(path, args.timeout):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
