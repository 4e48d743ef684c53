"""Run chapters with their switch on (``LARGER_RUN`` / ``LOAD_PRETRAINED = True``), offline.

Every chapter keeps its heavier run behind a switch at the top, off by default, and the stored
outputs (which nbval checks) come from the default path. A reader in Colab flips the switch and
runs the other path, so that path is run here too: the notebook is copied with the switch set to
True and executed top to bottom in a scratch folder, with offline stand-ins for what the switched
path downloads (``tests/stand_ins.py``: CIFAR-10 files, a hub cache). A page may have both
switches (training longer, loading pretrained weights); each is then run on its own, the other
left off, since that is what a reader who flips one of them gets.

Training that a GPU does in minutes would take hours here, so :data:`SHRINK` cuts epoch counts
(exact text replacements, each of which must match, so they cannot silently go stale); the
code path, models, data and devices stay those of the switched run.

    python -m tests.switched_notebooks                       # every switch of every chapter
    python -m tests.switched_notebooks chapters/03_hands_on/04_pretrained.ipynb
    python -m tests.switched_notebooks chapters/02_applications/04_multimodal.ipynb --switch LOAD_PRETRAINED
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.stand_ins import (
    hub_environment,
    write_cifar10,
    write_clip_repo,
    write_hub_cache,
    write_mae_repo,
)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SWITCH = re.compile(r"^(LARGER_RUN|LOAD_PRETRAINED) = False\b", re.MULTILINE)

# notebook (relative to chapters/) -> {text in a code cell: what the switched run uses instead}.
# Epoch counts (and one batch size, one seed count) cut so that each switched page runs in a
# minute or two on a CPU; the numbers replaced are what the page runs on a Colab GPU.
SHRINK: dict[str, dict[str, str]] = {
    # Not a cut in epochs: the page loads DINO's ViT-S/16, and the stand-in in the hub has one block.
    "01_principles/02_self_attention.ipynb": {"from_pretrained_timm(DINO)": "from_pretrained_timm(DINO, depth=1)"},
    "01_principles/03_positions.ipynb": {"num_heads=4), 100)": "num_heads=4), 2)"},  # 100 epochs
    # 10 seeds per model and 500 test images per distance; here the default's 3 seeds and fewer images.
    "01_principles/05_vit_and_cnns.ipynb": {"SEEDS = range(10) if": "SEEDS = range(3) if", "N_TEST = 500 if": "N_TEST = 100 if"},
    "01_principles/06_cost.ipynb": {"torch.randn(32, 3, 224, 224": "torch.randn(2, 3, 224, 224"},  # ViT-B, batch 32
    # 10 seeds for every result over seeds; here the default's 3.
    "01_principles/07_depth_and_stability.ipynb": {"range(10) if LARGER_RUN": "range(3) if LARGER_RUN"},
    "02_applications/01_dense_prediction.ipynb": {"epochs=40 if LARGER_RUN": "epochs=2 if LARGER_RUN"},
    "02_applications/02_masked_pretraining.ipynb": {"epochs=400 if LARGER_RUN": "epochs=2 if LARGER_RUN"},
    "02_applications/03_science.ipynb": {"epochs=20 if LARGER_RUN": "epochs=2 if LARGER_RUN"},
    "02_applications/04_multimodal.ipynb": {"epochs=150 if LARGER_RUN": "epochs=2 if LARGER_RUN"},
    "02_applications/05_generation.ipynb": {"epochs=100 if LARGER_RUN": "epochs=2 if LARGER_RUN"},
    # 50 + 30 epochs on 50,000 CIFAR-10 images and subsets; here one epoch each on 1,500 stand-ins.
    "03_hands_on/01_training_from_scratch.ipynb": {
        '"epochs": 50,': '"epochs": 1,', '"epochs": 30,': '"epochs": 1,',
        "SIZES = [2500, 10000, len(train)]": "SIZES = [250, 1000, len(train)]",
    },
    # 5 seeds with the recipes' epochs (None); here 3 seeds (the fewest a seed summary takes) of 2 student epochs.
    "03_hands_on/02_distillation.ipynb": {"(0, 1, 2, 3, 4), 1.0, None": "(0, 1, 2), 1.0, 2"},
    # The recipe's four-block model, 30 epochs, 5 seeds; here 2 epochs and 3 seeds.
    "03_hands_on/03_resolution.ipynb": {'FIT = DIGITS_RECIPE["fit"]': 'FIT = {**DIGITS_RECIPE["fit"], "epochs": 2}',
                                        "SEEDS = (0, 1, 2, 3, 4) if LARGER_RUN": "SEEDS = (0, 1, 2) if LARGER_RUN"},
    "03_hands_on/04_pretrained.ipynb": {"STEPS = 30 if": "STEPS = 2 if"},  # fine-tuning steps at 384 x 384
}


def _cifar10(folder: Path) -> dict[str, str]:
    # Where load_cifar10(download=True) finds the files and then downloads nothing.
    write_cifar10(folder / "data", per_batch=300, test=300)
    return {}


def _hub(folder: Path) -> dict[str, str]:
    return hub_environment(write_hub_cache(folder / "hf_home"))


def _dino(folder: Path) -> dict[str, str]:
    # DINO's ViT-S/16 under its pretrained tag, with one block (SHRINK loads it with depth=1).
    return hub_environment(write_hub_cache(folder / "hf_home", "vit_small_patch16_224.dino", hf_repo=None, depth=1))


def _clip(folder: Path) -> dict[str, str]:
    return hub_environment(write_clip_repo(folder / "hf_home"))


def _mae(folder: Path) -> dict[str, str]:
    return hub_environment(write_mae_repo(folder / "hf_home"))


# notebook (relative to chapters/) -> writes its stand-ins into the scratch folder, returns env vars
STAND_INS: dict[str, Callable[[Path], dict[str, str]]] = {
    "03_hands_on/01_training_from_scratch.ipynb": _cifar10,
    "03_hands_on/04_pretrained.ipynb": _hub,
    "02_applications/02_masked_pretraining.ipynb": _mae,
    "02_applications/04_multimodal.ipynb": _clip,
    "01_principles/02_self_attention.ipynb": _dino,
}


def code_of(path: Path) -> str:
    """The source of every code cell of the notebook at ``path``, joined."""
    nb = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")


def switched_chapters() -> list[Path]:
    """Every chapter notebook that has a switch, sorted."""
    return [path for path in sorted(CHAPTERS.rglob("*.ipynb")) if SWITCH.search(code_of(path))]


def switches_of(path: Path) -> list[str]:
    """The names of the switches the notebook at ``path`` sets to False, sorted."""
    return sorted({match[1] for match in SWITCH.finditer(code_of(path))})


def switched_runs() -> list[tuple[Path, str]]:
    """Every (chapter, switch) to run: one run per switch, the page's other switch left off."""
    return [(path, switch) for path in switched_chapters() for switch in switches_of(path)]


def flip_switch(nb, name: str, switch: str | None = None) -> str:
    """Set one switch of the notebook to True in place; return its name.

    ``switch`` names it (``"LARGER_RUN"`` or ``"LOAD_PRETRAINED"``), and must be set to False on
    exactly one line; without it, the notebook must have exactly one switch line.
    """
    lines = [(cell, match) for cell in nb.cells if cell.cell_type == "code" for match in SWITCH.finditer(cell.source)]
    if switch is not None:
        lines = [(cell, match) for cell, match in lines if match[1] == switch]
    if len(lines) != 1:
        wanted = f"`{switch} = False`" if switch else "`LARGER_RUN = False` or `LOAD_PRETRAINED = False`"
        raise ValueError(f"{name}: expected one {wanted} line, found {len(lines)}")
    cell, match = lines[0]
    cell.source = cell.source[: match.start()] + f"{match[1]} = True" + cell.source[match.end():]
    return match[1]


def shrink(nb, name: str) -> None:
    """Apply :data:`SHRINK`'s replacements for ``name``; each must match at least once."""
    for old, new in SHRINK.get(name, {}).items():
        cells = [cell for cell in nb.cells if cell.cell_type == "code" and old in cell.source]
        if not cells:
            raise ValueError(f"{name}: SHRINK text {old!r} is not in any code cell; update tests/switched_notebooks.py")
        for cell in cells:
            cell.source = cell.source.replace(old, new)


def run_switched(path: Path, folder: Path, timeout: int = 1800, switch: str | None = None):
    """Execute ``path`` with ``switch`` (its one switch when None) on, in ``folder``; return the
    executed notebook.

    Raises ``nbclient.exceptions.CellExecutionError`` naming the failing cell and its traceback.
    The kernel inherits this process's environment plus the stand-ins' variables.
    """
    name = path.resolve().relative_to(CHAPTERS).as_posix()
    nb = nbformat.read(path, as_version=4)
    flip_switch(nb, name, switch)
    shrink(nb, name)
    folder.mkdir(parents=True, exist_ok=True)
    env = STAND_INS[name](folder) if name in STAND_INS else {}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with mock.patch.dict(os.environ, env):  # the kernel process starts with a copy of this environment
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapter notebooks (default: every one with a switch)")
    parser.add_argument("--switch", choices=("LARGER_RUN", "LOAD_PRETRAINED"), help="only this switch (default: each)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    failures = 0
    runs = [(path, switch) for path in args.notebooks for switch in switches_of(path)] if args.notebooks else switched_runs()
    for path, switch in runs:
        if args.switch and switch != args.switch:
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="switched-") as folder:
            try:
                run_switched(path, Path(folder), args.timeout, switch)
                status = "ok"
            except CellExecutionError as error:
                failures += 1
                status = f"FAILED\n{error}"
        print(f"{path} ({switch} = True): {status} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
