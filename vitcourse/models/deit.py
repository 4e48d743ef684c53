"""DeiT's distilled ViT (Touvron et al., 2021): a ViT with a distillation token and a second head.

A distilled ViT carries a second learned token next to the class token. It attends like any
other token, and its own head ``head_dist`` is trained to agree with a teacher (usually a
convnet), while the class token's head learns the true labels:

    tokens:  [cls, dist, patch_1 ... patch_N]  + pos_embed (covering all N + 2)
    training:   (head(cls), head_dist(dist))   -> distillation_loss(...)
    evaluation: (head(cls) + head_dist(dist)) / 2   (DeiT's code, timm and Hugging Face)

The paper's own evaluation fuses the two heads by adding their softmax outputs instead;
``fusion="softmax"`` does that.

The loss that trains the two heads is :func:`vitcourse.training.losses.distillation_loss`; the
course's experiment on digits is :mod:`vitcourse.experiments.distillation`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .vit import VisionTransformer, ViTConfig

__all__ = ["DistilledVisionTransformer", "FUSIONS"]

FUSIONS = ("average", "softmax", "cls", "dist")


class DistilledVisionTransformer(VisionTransformer):
    """A ViT with DeiT's distillation token: ``(B, C, H, W)`` -> logits.

    Built like a :class:`~vitcourse.models.vit.VisionTransformer`, from a
    :class:`~vitcourse.models.vit.ViTConfig` and/or its fields as keywords (class token
    pooling; register tokens are not supported), plus:

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

    def __init__(self, config: ViTConfig | None = None, /, *, fusion: str = "average", **options):
        config = ViTConfig.of(config, **options)
        if config.reg_tokens:
            raise ValueError("DistilledVisionTransformer does not support register tokens")
        if config.global_pool != "token":
            raise ValueError("DistilledVisionTransformer needs class_token=True and global_pool='token'")
        if config.no_embed_class:
            raise ValueError("DistilledVisionTransformer needs no_embed_class=False")
        super().__init__(config)
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
