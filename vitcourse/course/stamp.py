"""Stamp every notebook with its "Open in Colab" badge and its install cell.

The repository url and branch are named once, in ``_config.yml``; this tool writes them into
each notebook under ``chapters/``, ``solutions/`` and ``exercises/``, so that a fork changes
one line and runs ``vitcourse stamp``. The badge is the notebook's first cell, the install cell
its first code cell; both are found again by their cell tags and rewritten in place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOK_DIRS = ("chapters", "solutions", "exercises")
BADGE_TAG = "colab-badge"
INSTALL_TAG = "install-vitcourse"
INSTALL_ENV = "VITCOURSE_INSTALL_FROM"
COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def read_repository(root: Path) -> tuple[str, str]:
    """``(url, branch)`` from the ``repository`` section of ``root/_config.yml``."""
    import yaml

    config_path = Path(root) / "_config.yml"
    config = yaml.safe_load(config_path.read_text())
    repository = (config or {}).get("repository") or {}
    url, branch = repository.get("url"), repository.get("branch", "main")
    if not url or not url.startswith("https://github.com/"):
        raise ValueError(f"{config_path}: repository.url must be a https://github.com/ url, got {url!r}")
    return url.rstrip("/"), branch


def colab_url(repo_url: str, branch: str, notebook_path: str) -> str:
    """The Colab address that opens ``notebook_path`` (relative to the repository root)."""
    owner_repo = repo_url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{notebook_path}"


def badge_source(repo_url: str, branch: str, notebook_path: str) -> str:
    return f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({colab_url(repo_url, branch, notebook_path)})"


def install_source(repo_url: str, branch: str) -> str:
    return (
        "# Install vitcourse when it is missing (as in a fresh Colab runtime); a no-op otherwise.\n"
        f"# {INSTALL_ENV} may name another source, such as a local checkout.\n"
        "import importlib.util, os, subprocess, sys\n"
        "\n"
        'if importlib.util.find_spec("vitcourse") is None:\n'
        f'    source = os.environ.get("{INSTALL_ENV}", "git+{repo_url}@{branch}")\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)'
    )


def _tagged(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def _restamped(old, new_cell):
    """``old`` with ``new_cell``'s source, or ``new_cell`` when there is no ``old``.

    An unchanged cell is kept as it is, with its id, execution count and outputs, so that
    re-stamping an executed notebook changes nothing.
    """
    if old is None:
        return new_cell
    if old.source != new_cell.source:
        old.source = new_cell.source
        if old.cell_type == "code":
            old.outputs, old.execution_count = [], None
    return old


def stamp_notebook(nb, notebook_path: str, repo_url: str, branch: str) -> bool:
    """Put the badge first and the install cell first among code cells; return True if changed."""
    before = nbformat.writes(nb)
    old_badge = next((c for c in nb.cells if _tagged(c, BADGE_TAG)), None)
    old_install = next((c for c in nb.cells if _tagged(c, INSTALL_TAG)), None)
    cells = [c for c in nb.cells if c is not old_badge and c is not old_install]

    badge = nbformat.v4.new_markdown_cell(badge_source(repo_url, branch, notebook_path))
    badge.metadata["tags"] = [BADGE_TAG]
    install = nbformat.v4.new_code_cell(install_source(repo_url, branch))
    install.metadata["tags"] = [INSTALL_TAG]
    badge, install = _restamped(old_badge, badge), _restamped(old_install, install)

    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    cells.insert(first_code, install)
    cells.insert(0, badge)
    nb.cells = cells
    return nbformat.writes(nb) != before


def notebooks(root: Path) -> list[Path]:
    """Every notebook under the notebook folders, sorted."""
    found = []
    for folder in NOTEBOOK_DIRS:
        found.extend(p for p in (Path(root) / folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    return sorted(found)


def stamp_all(root: Path, check: bool = False) -> list[Path]:
    """Stamp every notebook; return those that changed (with ``check``, would change)."""
    root = Path(root)
    repo_url, branch = read_repository(root)
    changed = []
    for path in notebooks(root):
        nb = nbformat.read(path, as_version=4)
        if stamp_notebook(nb, path.relative_to(root).as_posix(), repo_url, branch):
            changed.append(path)
            if not check:
                nbformat.write(nb, path)
    return changed


def main(args: argparse.Namespace) -> int:
    changed = stamp_all(Path(args.root), check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'stamped'}: {path}")
    if args.check and changed:
        print("run `make stamp` (vitcourse stamp) to update them", file=sys.stderr)
        return 1
    return 0
