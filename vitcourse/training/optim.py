"""The optimiser's settings: which parameters decay, and the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn as nn

__all__ = ["parameter_groups", "warmup_cosine"]

# Parameters that are not weight matrices, whatever their shape: decaying them towards zero
# would pull every token towards the same vector.
NO_DECAY_NAMES = ("pos_embed", "cls_token", "dist_token", "reg_token")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on biases, norms, tokens or position embeddings."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        last = name.rsplit(".", 1)[-1]
        if param.ndim <= 1 or last in NO_DECAY_NAMES:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> Callable[[int], float]:
    """The learning-rate factor at step s: linear warm-up to 1, then cosine down to ``min_factor``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
