"""``vitcourse bench train``: train the course-scale CNN and ViT on digits and report.

Prints the recipe (model overrides and fit() settings from :mod:`vitcourse.training.recipes`), then trains
and evaluates the CNN baseline and the ViT. The last two lines are::

    digits_cnn test_accuracy=<a> train_seconds=<t> cpu_seconds=<c>
    digits_vit test_accuracy=<a> train_seconds=<t> cpu_seconds=<c>

``train_seconds`` is the wall time of ``fit`` (evaluation excluded); ``cpu_seconds`` is the CPU
time this process used meanwhile, which on a machine shared with other jobs is the better
estimate of what the run would take alone.
"""

from __future__ import annotations

import json
import time

import torch

from ..validation import as_device


def _train(name: str, recipe: dict, device, seed: int, progress: bool) -> dict:
    from ..data.digits import load_digits
    from ..models.registry import create_model
    from ..training.loop import evaluate, fit

    train, test = load_digits(**recipe["data"], device=device)
    torch.manual_seed(seed)
    model = create_model(recipe["model"], **recipe["model_overrides"]).to(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fit(model, train, **recipe["fit"], seed=seed, progress=progress)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = evaluate(model, test)
    parameters = sum(p.numel() for p in model.parameters())
    return {"name": name, "test_accuracy": result["accuracy"], "train_seconds": wall, "cpu_seconds": cpu, "parameters": parameters}


def main(args) -> int:
    from ..training.recipes import CNN_RECIPE, DIGITS_RECIPE
    from ..training.runtime import default_device

    device = as_device(args.device, "--device") if getattr(args, "device", None) else default_device()
    seed = getattr(args, "seed", 0)
    progress = getattr(args, "progress", False)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} seed={seed}")
    print("recipe digits_cnn:", json.dumps(CNN_RECIPE))
    print("recipe digits_vit:", json.dumps(DIGITS_RECIPE))
    lines = []
    for name, recipe in (("digits_cnn", CNN_RECIPE), ("digits_vit", DIGITS_RECIPE)):
        r = _train(name, recipe, device, seed, progress)
        print(f"# {name}: {r['parameters']} parameters", flush=True)
        lines.append(
            f"{name} test_accuracy={r['test_accuracy']:.4f} train_seconds={r['train_seconds']:.1f} "
            f"cpu_seconds={r['cpu_seconds']:.1f}"
        )
    print("\n".join(lines))
    return 0
