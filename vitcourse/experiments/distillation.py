"""DeiT's comparison at course scale, on digits: a CNN teacher and ViT students, over seeds.

:func:`run_distillation_experiment` trains the rows and summarises them; :func:`format_table`
prints the summary, with the recipes' gentle augmentation; ``tools/distillation_experiment.py``
runs the full-length version. Chapter 3.2 trains its rows with ``fit`` itself, since its finding
needs what this function does not vary: the students' augmentation and the soft term's size.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..data.digits import load_digits
from ..models.convnet import SmallCNN
from ..models.registry import create_model
from ..training.loop import evaluate, fit
from ..training.recipes import CNN_RECIPE, DIGITS_RECIPE

__all__ = ["run_distillation_experiment", "format_table"]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_distillation_experiment(
    seeds=(0, 1, 2),
    train_fraction: float = 1.0,
    student_epochs: int | None = None,
    teacher_epochs: int | None = None,
    alpha: float = 0.5,
    tau: float = 1.0,
    methods=("teacher", "vit", "soft", "hard", "hard_token"),
    student_overrides: dict | None = None,
    teacher_width: int = 32,
    progress: bool = False,
    log=None,
) -> dict:
    """DeiT's comparison at course scale, on digits: teacher CNN vs ViT students.

    For every seed it trains the teacher (:class:`~vitcourse.models.convnet.SmallCNN`) and then, from
    the same initialisation per seed, the students:

    - ``vit``: the ViT alone (no teacher);
    - ``soft`` / ``hard``: the same ViT with classic knowledge distillation through its one head;
    - ``hard_token``: DeiT's distilled ViT (distillation token), hard distillation, evaluated
      on the class head, the distillation head and their fusion (the average of the logits).

    Args:
        seeds: one run of each method per seed.
        train_fraction: a class-stratified fraction of the digits training set (the test set is
            always the full held-out set), to study the small-data regime.
        student_epochs, teacher_epochs: epochs; ``None`` takes them from
            :data:`vitcourse.training.recipes.DIGITS_RECIPE` and :data:`~vitcourse.training.recipes.CNN_RECIPE`, whose
            other settings are used as they are.
        alpha, tau: the distillation weights.
        methods: which rows to run (``teacher`` is always trained when a student needs it).
        student_overrides: passed to ``create_model("vit_digits", ...)`` and the distilled twin.
        log: a function called with one line of text per finished run (e.g. ``print``).

    A small call for a notebook: ``run_distillation_experiment(seeds=(0, 1, 2),
    train_fraction=0.2, student_epochs=15)`` used 28 s of CPU time here (2-core CPU); at that
    budget the students are far from converged (about 55-60%) and distillation does not help.
    ``tools/distillation_experiment.py`` runs the full-length version.

    Returns:
        ``{"settings": ..., "runs": [per-run dicts], "summary": {row: {"mean", "std",
        "seconds_mean", "seconds_std", "n"}}}`` with test accuracies in [0, 1].
    """
    unknown = set(methods) - {"teacher", "vit", "soft", "hard", "hard_token"}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}")
    if not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction!r}")
    train_full, test = load_digits(**DIGITS_RECIPE["data"])
    recipe = dict(DIGITS_RECIPE["fit"])
    recipe["epochs"] = student_epochs or recipe["epochs"]
    teacher_recipe = dict(CNN_RECIPE["fit"])
    teacher_recipe["epochs"] = teacher_epochs or teacher_recipe["epochs"]
    overrides = {**DIGITS_RECIPE["model_overrides"], **(student_overrides or {})}
    runs = []

    def record(row, seed, accuracy, seconds):
        runs.append({"row": row, "seed": seed, "test_accuracy": accuracy, "seconds": seconds})
        if log is not None:
            log(f"{row:<22} seed={seed} test_accuracy={accuracy:.4f} seconds={seconds:.1f}")

    for seed in seeds:
        train = train_full if train_fraction == 1 else train_full.subset(fraction=train_fraction, seed=seed)
        torch.manual_seed(seed)
        teacher = SmallCNN(in_chans=1, num_classes=10, width=teacher_width)
        started = time.perf_counter()
        fit(teacher, train, **teacher_recipe, seed=seed, progress=progress)
        record("teacher", seed, evaluate(teacher, test)["accuracy"], time.perf_counter() - started)
        for method in ("vit", "soft", "hard"):
            if method not in methods:
                continue
            torch.manual_seed(1000 + seed)
            student = create_model(DIGITS_RECIPE["model"], **overrides)
            started = time.perf_counter()
            kwargs = {} if method == "vit" else {"teacher": teacher, "distillation": method, "alpha": alpha, "tau": tau}
            fit(student, train, **recipe, seed=seed, progress=progress, **kwargs)
            record(method, seed, evaluate(student, test)["accuracy"], time.perf_counter() - started)
        if "hard_token" in methods:
            torch.manual_seed(1000 + seed)
            student = create_model("deit_digits_distilled", **overrides)
            started = time.perf_counter()
            fit(student, train, **recipe, seed=seed, progress=progress, teacher=teacher, distillation="hard", alpha=alpha, tau=tau)
            seconds = time.perf_counter() - started
            for fusion, row in (("cls", "hard_token:cls_head"), ("dist", "hard_token:dist_head"), ("average", "hard_token:fused")):
                student.fusion = fusion
                record(row, seed, evaluate(student, test)["accuracy"], seconds)
            student.fusion = "average"

    summary = {}
    for row in dict.fromkeys(r["row"] for r in runs):
        accs = [r["test_accuracy"] for r in runs if r["row"] == row]
        secs = [r["seconds"] for r in runs if r["row"] == row]
        mean, std = _mean_std(accs)
        s_mean, s_std = _mean_std(secs)
        summary[row] = {"mean": mean, "std": std, "seconds_mean": s_mean, "seconds_std": s_std, "n": len(accs)}
    settings = {
        "seeds": list(seeds), "train_fraction": train_fraction, "train_size": None, "test_size": len(test),
        "alpha": alpha, "tau": tau, "student": {"model": DIGITS_RECIPE["model"], **overrides},
        "teacher": {"model": "SmallCNN", "width": teacher_width}, "fit": recipe, "teacher_fit": teacher_recipe,
    }  # fmt: skip
    settings["train_size"] = len(train_full) if train_fraction == 1 else len(train_full.subset(fraction=train_fraction, seed=seeds[0]))
    return {"settings": settings, "runs": runs, "summary": summary}


def format_table(result: dict) -> str:
    """The experiment's summary as a fixed-width text table (accuracy in %, mean ± std)."""
    lines = [f"{'row':<22} {'test accuracy (%)':>20} {'seconds':>14} {'n':>3}"]
    for row, s in result["summary"].items():
        acc = f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"
        sec = f"{s['seconds_mean']:.1f} ± {s['seconds_std']:.1f}"
        lines.append(f"{row:<22} {acc:>20} {sec:>14} {s['n']:>3}")
    return "\n".join(lines)
