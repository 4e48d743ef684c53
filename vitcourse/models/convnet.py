"""A small convnet: the course's CNN baseline and the distillation teacher.

Three 3 x 3 convolution stages (BatchNorm, ReLU), one 2 x 2 max-pool, global average pooling
and a linear head: ``(B, C, H, W)`` -> ``(B, num_classes)``. Its locality and translation
equivariance are exactly the inductive biases a ViT lacks, which is why DeiT distils from a
convnet.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..validation import check_image_dtype, check_positive_int

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
        self.in_chans = check_positive_int(in_chans, "in_chans")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        width = check_positive_int(width, "width")
        self.features = nn.Sequential(
            _conv(in_chans, width),
            _conv(width, 2 * width),
            nn.MaxPool2d(2),
            _conv(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for an input the model cannot take."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, {self.in_chans}, H, W), got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x must be (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        if x.shape[2] < 2 or x.shape[3] < 2:  # the 2 x 2 max-pool needs at least one window
            raise ValueError(f"x must be at least 2 x 2 pixels, got shape {tuple(x.shape)}")
        check_image_dtype(x, self.head.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, num_classes)``."""
        self.check_input(x)
        return self.head(self.features(x))

