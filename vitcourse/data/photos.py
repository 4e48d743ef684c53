"""Real photographs offline: scikit-image's bundled colour photos, cropped and resized for a model."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..validation import check_positive_int, check_tensor

__all__ = ["PHOTO_NAMES", "load_photo", "load_photos", "center_crop_resize", "imagenet_normalize"]


PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_photo(name: str) -> torch.Tensor:
    """One of scikit-image's bundled colour photos as a ``(3, H, W)`` float tensor in [0, 1].

    ``name`` is one of :data:`PHOTO_NAMES`: astronaut (512 x 512), chelsea the cat (300 x 451),
    coffee (400 x 600), rocket (427 x 640).
    """
    if name not in PHOTO_NAMES:
        raise ValueError(f"unknown photo {name!r}; choose one of {', '.join(PHOTO_NAMES)}")
    import skimage.data

    array = getattr(skimage.data, name)()  # (H, W, 3) uint8
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0


def load_photos(size: int | None = 224) -> dict[str, torch.Tensor]:
    """All bundled photos by name; with ``size``, center-cropped and resized to ``(3, size, size)``."""
    photos = {name: load_photo(name) for name in PHOTO_NAMES}
    if size is not None:
        photos = {name: center_crop_resize(img, size) for name, img in photos.items()}
    return photos


def center_crop_resize(image: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Crop the central square and resize it: ``(C, H, W)`` or ``(B, C, H, W)`` -> side ``size``.

    Resizing is bilinear with antialiasing (what a photo needs when it shrinks). A channels-last
    photo ``(H, W, 3)`` (as numpy and PIL hold them) is refused rather than read as ``H``
    channels: a last dimension of 3 or 4 with a first (channel) dimension that is not 1, 3 or 4
    can only be that.
    """
    size = check_positive_int(size, "size")
    check_tensor(image, "image")
    if image.dim() not in (3, 4):
        raise ValueError(f"image must be a (C, H, W) or (B, C, H, W) tensor, got shape {tuple(image.shape)}")
    if image.shape[-1] in (3, 4) and image.shape[-3] not in (1, 3, 4):
        order = "2, 0, 1" if image.dim() == 3 else "0, 3, 1, 2"
        raise ValueError(
            f"image of shape {tuple(image.shape)} looks channels-last (H, W, C); this function takes "
            f"channels first: use image.permute({order})"
        )
    batched = image.dim() == 4
    x = image if batched else image[None]
    height, width = x.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x if batched else x[0]


def imagenet_normalize(image: torch.Tensor) -> torch.Tensor:
    """Standardise [0, 1] RGB images ``(..., 3, H, W)`` with the ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image - mean) / std
