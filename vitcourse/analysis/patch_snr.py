"""The patch-size signal-to-noise argument (chapter 1.1, exercise 02): how small an object a
patch of side p can still see through pixel noise."""

from __future__ import annotations

import math

from ..validation import check_finite_positive

__all__ = ["min_object_size"]


# ---- the patch-size signal-to-noise argument -----------------------------------------------


def min_object_size(patch_size: int, noise_std: float, contrast: float, z: float = 3.0) -> float:
    """Smallest object side s that a patch mean detects at z noise standard deviations.

    A p x p patch mean has noise std ``sigma / p``; an s x s object of contrast c shifts it by
    ``c s^2 / p^2``. Detection needs ``c s^2 / p^2 >= z sigma / p``, so
    ``s = sqrt(z * sigma * p / c)``: the smallest visible object grows like ``sqrt(p)``.
    """
    p = check_finite_positive(patch_size, "patch_size")
    sigma = check_finite_positive(noise_std, "noise_std")
    c = check_finite_positive(contrast, "contrast")
    z = check_finite_positive(z, "z")
    return math.sqrt(z * sigma * p / c)
