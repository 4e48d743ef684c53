"""A small convnet: the course's CNN baseline and the distillation teacher.

Three 3 x 3 convolution stages (BatchNorm, ReLU), one 2 x 2 max-pool, global average pooling
and a linear head: ``(B, C, H, W)`` -> ``(B, num_classes)``. Its locality and translation
equivariance are exactly the inductive biases a ViT lacks, which is why DeiT distils from a
convnet.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .model import register_model

__all__ = ["SmallCNN"]


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """``(B, in_chans, H, W)`` -> logits ``(B, num_classes)``; works for any H, W >= 2.

    Args:
        in_chans: image channels (1 for digits, 3 for photos / CIFAR-10).
        num_classes: outputs.
        width: channels of the first stage (then 2x and 4x).
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        for name, value in (("in_chans", in_chans), ("num_classes", num_classes), ("width", width)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.features = nn.Sequential(
            _conv(in_chans, width),
            _conv(width, 2 * width),
            nn.MaxPool2d(2),
            _conv(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, num_classes)``."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_chans:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be (B, {self.in_chans}, H, W), got {shape}")
        return self.head(self.features(x))


register_model("cnn_digits", SmallCNN, in_chans=1, num_classes=10, width=32)
