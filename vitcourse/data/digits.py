"""scikit-learn's 1797 handwritten 8 x 8 digits (bundled, offline), with a fixed stratified split."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..validation import as_device, check_int, check_positive_int, check_real
from .pipeline import ImageData

__all__ = ["load_digits", "DIGITS_SPLIT_SEED"]


DIGITS_SPLIT_SEED = 0


def load_digits(
    upscale: int = 1,
    test_fraction: float = 0.25,
    device="cpu",
    normalize: bool = True,
    split_seed: int = DIGITS_SPLIT_SEED,
) -> tuple[ImageData, ImageData]:
    """scikit-learn's handwritten digits as ``(train, test)`` :class:`ImageData`.

    1797 grey 8 x 8 images (pixel values 0..16), 10 classes. The split is stratified and fixed
    by ``split_seed`` (default: 1347 train / 450 test images), so every chapter reports numbers
    on the same test set.

    Args:
        upscale: integer factor to enlarge the images (nearest-neighbour: each pixel becomes
            an ``upscale x upscale`` block), e.g. 2 for 16 x 16.
        test_fraction: fraction of each class held out for testing; both sets need at least
            one image of each of the 10 classes (so about 0.006 to 0.994).
        device: where the tensors live.
        normalize: standardise with the *training* mean and std (one scalar each); otherwise
            scale to [0, 1].
        split_seed: seeds the split, an int in ``[0, 2**32)``.

    Returns:
        ``(train, test)``, images ``(N, 1, 8 * upscale, 8 * upscale)`` float32.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    upscale = check_positive_int(upscale, "upscale")
    test_fraction = check_real(test_fraction, "test_fraction", "a number in (0, 1)", lambda v: 0 < v < 1)
    split_seed = check_int(split_seed, "split_seed", "an int in [0, 2**32)", lambda v: 0 <= v < 2**32)
    device = as_device(device)
    digits = _sk_load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    # The split is stratified, so each set needs an image of every class; sklearn rounds the
    # test set up to ceil(test_fraction * N) images.
    total, num_classes = len(labels), 10
    held_out = math.ceil(test_fraction * total)
    if not num_classes <= held_out <= total - num_classes:
        raise ValueError(
            f"test_fraction={test_fraction} would hold out {held_out} of the {total} images and train on "
            f"{total - held_out}; both sets need an image of each of the {num_classes} classes, so "
            f"test_fraction must be above {(num_classes - 1) / total:.4f} and at most {(total - num_classes) / total:.4f}"
        )
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=digits.target, random_state=split_seed
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    if upscale > 1:
        images = images.repeat_interleave(upscale, dim=2).repeat_interleave(upscale, dim=3)
    fill, info = 0.0, {"normalize": None, "upscale": upscale}
    if normalize:
        mean, std = images[train_idx].mean().item(), images[train_idx].std().item()
        images = (images - mean) / std
        fill = (0.0 - mean) / std
        info["normalize"] = (mean, std)
    classes = [str(c) for c in range(10)]
    train = ImageData(images[train_idx], labels[train_idx], 10, classes, fill, dict(info))
    test = ImageData(images[test_idx], labels[test_idx], 10, classes, fill, dict(info))
    return train.to(device), test.to(device)
