"""DeiT's distillation (Touvron et al., 2021): a distillation token and the losses.

A distilled ViT carries a second learned token next to the class token. It attends like any
other token, and its own head ``head_dist`` is trained to agree with a teacher (usually a
convnet), while the class token's head learns the true labels:

    tokens:  [cls, dist, patch_1 ... patch_N]  + pos_embed (covering all N + 2)
    training:   (head(cls), head_dist(dist))   -> distillation_loss(...)
    evaluation: (head(cls) + head_dist(dist)) / 2   (DeiT's code, timm and Hugging Face)

The paper's own evaluation fuses the two heads by adding their softmax outputs instead;
``fusion="softmax"`` does that.

:func:`distillation_loss` follows the formulas of DeiT's released ``DistillationLoss``.
:func:`run_distillation_experiment` is the course's experiment on digits.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import DIGITS_CONFIG, VisionTransformer, register_model

__all__ = [
    "DistilledVisionTransformer",
    "distillation_loss",
    "run_distillation_experiment",
    "FUSIONS",
    "DISTILLATION_KINDS",
]

FUSIONS = ("average", "softmax", "cls", "dist")
DISTILLATION_KINDS = ("none", "soft", "hard")


class DistilledVisionTransformer(VisionTransformer):
    """A ViT with DeiT's distillation token: ``(B, C, H, W)`` -> logits.

    Takes every :class:`~vitcourse.model.VisionTransformer` argument (class token pooling;
    register tokens are not supported) plus:

    Args:
        fusion: what evaluation mode returns, ``(B, num_classes)``:
            ``'average'`` (default) the mean of the two heads' logits, as DeiT's code does;
            ``'softmax'`` the paper's fusion, the sum of the two softmaxes, returned as the log of
            their mean (a log-probability vector with the same argmax, so that cross-entropy
            still applies); ``'cls'`` or ``'dist'`` one head alone.

    In training mode ``forward`` returns ``(cls_logits, dist_logits)``, each ``(B, num_classes)``.
    State-dict keys are timm's: ``cls_token``, ``dist_token``, ``pos_embed`` of length N + 2,
    ``head``, ``head_dist``.
    """

    def __init__(self, *args, fusion: str = "average", **kwargs):
        if kwargs.get("reg_tokens", 0):
            raise ValueError("DistilledVisionTransformer does not support register tokens")
        if kwargs.get("global_pool", "token") != "token" or not kwargs.get("class_token", True):
            raise ValueError("DistilledVisionTransformer needs class_token=True and global_pool='token'")
        if kwargs.get("no_embed_class", False):
            raise ValueError("DistilledVisionTransformer needs no_embed_class=False")
        super().__init__(*args, **kwargs)
        self.fusion = fusion
        dim = self.embed_dim
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.num_prefix_tokens += 1
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens, dim))
        self.head_dist = nn.Linear(dim, self.num_classes) if self.num_classes else nn.Identity()
        self.reset_parameters()
        nn.init.trunc_normal_(self.dist_token, std=0.02)  # as timm initialises it

    @property
    def fusion(self) -> str:
        return self._fusion

    @fusion.setter
    def fusion(self, value: str) -> None:
        if value not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {value!r}")
        self._fusion = value

    def _prefix_tokens(self, batch: int) -> list[torch.Tensor]:
        """The class token, then the distillation token, each ``(B, 1, D)``."""
        return [self.cls_token.expand(batch, -1, -1), self.dist_token.expand(batch, -1, -1)]

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``(B, N + 2, D)`` -> ``(cls_logits, dist_logits)``, both ``(B, num_classes)``."""
        return self.head(x[:, 0]), self.head_dist(x[:, 1])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        """Tokens -> ``(cls, dist)`` logits in training, the fused ``(B, num_classes)`` in eval."""
        if pre_logits:
            return (x[:, 0] + x[:, 1]) / 2
        cls_logits, dist_logits = self.forward_heads(x)
        if self.training:
            return cls_logits, dist_logits
        if self.fusion == "average":
            return (cls_logits + dist_logits) / 2
        if self.fusion == "softmax":
            # log((softmax(a) + softmax(b)) / 2), computed stably in log space.
            both = torch.stack([cls_logits.log_softmax(-1), dist_logits.log_softmax(-1)])
            return torch.logsumexp(both, dim=0) - math.log(2)
        return cls_logits if self.fusion == "cls" else dist_logits


# DeiT's ImageNet configurations with a distillation token, with timm's names.
register_model(
    "deit_tiny_distilled_patch16_224", DistilledVisionTransformer, patch_size=16, embed_dim=192, depth=12, num_heads=3
)
register_model(
    "deit_small_distilled_patch16_224", DistilledVisionTransformer, patch_size=16, embed_dim=384, depth=12, num_heads=6
)
register_model(
    "deit_base_distilled_patch16_224", DistilledVisionTransformer, patch_size=16, embed_dim=768, depth=12, num_heads=12
)
# The course-scale student for digits (8 x 8, patch 2), the same shape as "vit_digits".
register_model("deit_digits_distilled", DistilledVisionTransformer, **DIGITS_CONFIG)


# ---- the losses -------------------------------------------------------------------------------


def _check_distillation_args(kind, alpha, tau) -> None:
    if kind not in DISTILLATION_KINDS:
        raise ValueError(f"kind must be one of {DISTILLATION_KINDS}, got {kind!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0 or not math.isfinite(tau):
        raise ValueError(f"tau must be a positive number, got {tau!r}")


def _check_distillation_inputs(cls_logits, dist_logits, teacher_logits, labels, kind, label_smoothing) -> None:
    """The tensors distillation_loss needs for ``kind``: logits ``(B, K)`` of one floating dtype,
    labels ``(B,)`` integer class indices in ``[0, K)``."""
    if not isinstance(cls_logits, torch.Tensor):
        raise TypeError(f"cls_logits must be a tensor, got {type(cls_logits).__name__}")
    if cls_logits.dim() != 2 or not cls_logits.is_floating_point():
        raise ValueError(f"cls_logits must be floating-point (B, K), got {cls_logits.dtype} {tuple(cls_logits.shape)}")
    needed = [("dist_logits", dist_logits), ("teacher_logits", teacher_logits)] if kind != "none" else []
    for name, value in needed:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"kind={kind!r} needs {name} as a tensor, got {type(value).__name__}")
        if value.shape != cls_logits.shape or not value.is_floating_point():
            raise ValueError(f"{name} must be floating-point with the shape of cls_logits {tuple(cls_logits.shape)}, "
                             f"got {value.dtype} {tuple(value.shape)}")
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a tensor, got {type(labels).__name__}")
    if labels.shape != cls_logits.shape[:1]:
        raise ValueError(f"labels must be ({cls_logits.shape[0]},), got {tuple(labels.shape)}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    # On a GPU this check would wait for the device at every step; fit checks labels once, up front.
    on_cpu = labels.device.type == "cpu"
    if on_cpu and labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < cls_logits.shape[1]:
        raise ValueError(f"labels must lie in [0, {cls_logits.shape[1]}) for {cls_logits.shape[1]} classes, "
                         f"got values from {int(labels.min())} to {int(labels.max())}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")


def distillation_loss(
    cls_logits: torch.Tensor,
    dist_logits: torch.Tensor | None,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    kind: str = "hard",
    alpha: float = 0.5,
    tau: float = 1.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """DeiT's distillation objective, a scalar.

    Args:
        cls_logits: ``(B, K)`` from the class head; trained on the labels.
        dist_logits: ``(B, K)`` from the distillation head; trained on the teacher. For a
            student with one head pass its logits twice (classic knowledge distillation).
        teacher_logits: ``(B, K)``, treated as constants (detached).
        labels: ``(B,)`` class indices.
        kind: ``'none'`` (only the base loss), ``'soft'`` or ``'hard'``.
        alpha: weight of the distillation term.
        tau: temperature of the soft term.
        label_smoothing: of the base cross-entropy (DeiT trains with 0.1).

    The formulas, with ``base = CE(cls_logits, labels)``:

    - soft: ``KL(softmax(t / tau) || softmax(s / tau))`` summed over batch *and* classes, times
      ``tau**2``, divided by ``s.numel() = B * K`` (``F.kl_div(log_softmax(s / tau),
      log_softmax(t / tau), reduction='sum', log_target=True)``). Since ``batchmean`` divides
      the same sum by ``B``, DeiT's soft term equals the ``batchmean`` KL divided by the number
      of classes ``K`` (times ``tau**2``): at equal ``alpha`` it weighs the teacher ``K`` times
      less than a ``batchmean`` KL would.
    - hard: ``CE(dist_logits, argmax(teacher_logits))``.
    - the loss: ``(1 - alpha) * base + alpha * distillation``; ``'none'`` returns ``base``.
    """
    _check_distillation_inputs(cls_logits, dist_logits, teacher_logits, labels, kind, label_smoothing)
    _check_distillation_args(kind, alpha, tau)
    base = F.cross_entropy(cls_logits, labels, label_smoothing=label_smoothing)
    if kind == "none":
        return base
    teacher_logits = teacher_logits.detach()
    if kind == "soft":
        distill = (
            F.kl_div(
                F.log_softmax(dist_logits / tau, dim=1),
                F.log_softmax(teacher_logits / tau, dim=1),
                reduction="sum",
                log_target=True,
            )
            * (tau * tau)
            / dist_logits.numel()
        )
    else:
        distill = F.cross_entropy(dist_logits, teacher_logits.argmax(dim=1))
    return (1 - alpha) * base + alpha * distill


# ---- the experiment ------------------------------------------------------------------------------


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

    For every seed it trains the teacher (:class:`~vitcourse.convnet.SmallCNN`) and then, from
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
            :data:`vitcourse.train.DIGITS_RECIPE` and :data:`vitcourse.train.CNN_RECIPE`, whose
            other settings are used as they are.
        alpha, tau: the distillation weights.
        methods: which rows to run (``teacher`` is always trained when a student needs it).
        student_overrides: passed to ``create_model("vit_digits", ...)`` and the distilled twin.
        log: a function called with one line of text per finished run (e.g. ``print``).

    A small call for a notebook: ``run_distillation_experiment(seeds=(0, 1, 2),
    train_fraction=0.2, student_epochs=15)`` used 28 s of CPU time here (2-core CPU); at that
    budget the students are far from converged (about 55-60%) and distillation does not help.
    ``scripts/distillation_experiment.py`` runs the full-length version.

    Returns:
        ``{"settings": ..., "runs": [per-run dicts], "summary": {row: {"mean", "std",
        "seconds_mean", "seconds_std", "n"}}}`` with test accuracies in [0, 1].
    """
    from .convnet import SmallCNN
    from .data import load_digits
    from .model import create_model
    from .train import CNN_RECIPE, DIGITS_RECIPE, evaluate, fit

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
