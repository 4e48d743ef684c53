"""The course's convnets: the CNN baseline and distillation teacher, and a CNN on a ViT's patches.

- :class:`SmallCNN`: three 3 x 3 convolution stages (BatchNorm, ReLU), one 2 x 2 max-pool,
  global average pooling and a linear head: ``(B, C, H, W)`` -> ``(B, num_classes)``. Its
  locality and translation equivariance are exactly the inductive biases a ViT lacks, which is
  why DeiT distils from a convnet.
- :class:`PatchCNN`: a ViT's patch embedding, then ``depth`` 3 x 3 convolutions on the grid of
  patches, so that one number sets its receptive field: ``2 depth + 1`` cells.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..validation import check_image_dtype, check_non_negative_int, check_positive_int

__all__ = ["PatchCNN", "SmallCNN"]


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


class PatchCNN(nn.Module):
    """A convnet on a ViT's grid of patches: ``(B, in_chans, H, W)`` -> logits ``(B, num_classes)``.

    The CNN to set beside a ViT when the question is what each can combine: the same patches,
    mixed by convolutions instead of attention. A ``p x p`` convolution with stride ``p`` embeds
    each patch (a ViT's patch embedding, and the "patchify" stem of ConvNeXt), with BatchNorm and
    ReLU; then ``depth`` 3 x 3 convolutions (BatchNorm, ReLU, the layers of :class:`SmallCNN`)
    mix neighbouring cells of the ``(H / p, W / p)`` grid; a global average pool and a linear
    head give the logits, as in ResNet.

    Each output of the last layer sees a ``(2 depth + 1) x (2 depth + 1)`` window of cells
    (:attr:`receptive_field`). ``depth=0`` is a bag of patches: one feature vector per cell,
    averaged and read by a linear head, blind to where each cell is.

    Args:
        depth: 3 x 3 layers after the patch embedding, 0 or more.
        patch_size: p; H and W must be multiples of it.
        in_chans: image channels.
        num_classes: outputs.
        width: channels of every layer.
    """

    def __init__(self, depth: int = 2, patch_size: int = 4, in_chans: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.depth = check_non_negative_int(depth, "depth")
        self.patch_size = check_positive_int(patch_size, "patch_size")
        self.in_chans = check_positive_int(in_chans, "in_chans")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        width = check_positive_int(width, "width")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, patch_size, stride=patch_size, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.layers = nn.Sequential(*(_conv(width, width) for _ in range(depth)))
        self.head = nn.Linear(width, num_classes)

    @property
    def receptive_field(self) -> int:
        """The side, in cells, of the window one output of the last layer sees: ``2 depth + 1``."""
        return 2 * self.depth + 1

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for an input the model cannot take."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, {self.in_chans}, H, W), got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x must be (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        p = self.patch_size
        if x.shape[2] < p or x.shape[3] < p or x.shape[2] % p or x.shape[3] % p:
            raise ValueError(f"x's height and width must be positive multiples of patch_size={p}, got shape {tuple(x.shape)}")
        check_image_dtype(x, self.stem[0].weight.dtype)  # not the head's: a caller may replace the head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> the last layer's feature map ``(B, width, H / p, W / p)``."""
        self.check_input(x)
        return self.layers(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, num_classes)``: the average of the feature map, then the head."""
        return self.head(self.forward_features(x).mean(dim=(2, 3)))
