"""Exercise 02 (patch SNR): the signal-to-noise ratio of any linear filter of a patch.

The chapter page (*From pixels to tokens*) argues with the simplest feature a linear patch
embedding computes, the patch mean: its noise is ``sigma / p``, an object of side ``s`` moves it by
``c s^2 / p^2``, hence the smallest detectable side ``sqrt(z sigma p / c)``. The exercise asks for
the argument behind it, for any linear filter, which the page does not print:

- ``filter_snr(weights, template, noise_std)``: for filters ``w`` of shape ``(..., H, W)`` and a
  signal ``t`` (the object's contrast image, broadcastable to them) under independent pixel noise
  of standard deviation ``sigma``, the shift of each filter's response in units of its noise,
  ``(w . t) / (sigma ||w||_2)``, shape ``(...)``, in the weights' dtype. The page's patch mean is
  one filter; the matched filter (``w = t``) is the best one.
"""

from __future__ import annotations

import torch

from ...validation import check_real, check_tensor
from ..contracts import Contract, draw_float, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "filter_snr"]

CONTRACT = Contract(
    "02_patch_snr",
    "the signal-to-noise ratio of a linear filter of a patch",
    names={"filter_snr": "(weights, template, noise_std)"},
    reference_answers={"filter_snr": "vitcourse.course.exercises.patch_snr.filter_snr"},
)


# ---- the reference -------------------------------------------------------------------------------


def filter_snr(weights: torch.Tensor, template: torch.Tensor, noise_std: float) -> torch.Tensor:
    """``(w . t) / (sigma ||w||_2)`` over the last two axes: weights ``(..., H, W)``, template
    broadcastable to them -> ``(...)`` in the weights' dtype. Raises ``ValueError`` when
    ``noise_std`` is not positive, the last two axes differ, or a filter is all zeros."""
    check_tensor(weights, "weights")
    check_tensor(template, "template")
    sigma = check_real(noise_std, "noise_std", "a positive number", lambda s: s > 0)
    if weights.dim() < 2 or template.shape[-2:] != weights.shape[-2:]:
        raise ValueError(f"weights (..., H, W) and template (H, W) must match, got {tuple(weights.shape)} "
                         f"and {tuple(template.shape)}")
    norms = weights.square().sum(dim=(-2, -1)).sqrt()
    if bool((norms == 0).any()):
        raise ValueError("a filter of all zeros has no response to measure")
    # the response's noise: a weighted sum of independent pixels has std sigma * ||w||_2
    return (weights * template.to(weights.dtype)).sum(dim=(-2, -1)) / (sigma * norms)


# ---- the clauses: 8 points -------------------------------------------------------------------------


def _square(size: int, side: int, contrast: float, dtype=torch.float64) -> torch.Tensor:
    """A size x size template: a side x side square of the given contrast in the middle."""
    t = torch.zeros(size, size, dtype=dtype)
    start = (size - side) // 2
    t[start:start + side, start:start + side] = contrast
    return t


@CONTRACT.clause("filter_snr", points=3)
def random_filters(student, rng):
    """Several random filters on a non-square patch and a random template: one SNR per filter."""
    h, w = draw_int(rng, 3, 6), draw_int(rng, 7, 9)
    weights = torch.randn(draw_int(rng, 2, 4), h, w, generator=rng)
    template = torch.randn(h, w, generator=rng)
    sigma = draw_float(rng, 0.05, 2.0)
    got = student.call("filter_snr", weights, template, sigma)
    expected = filter_snr(weights, template, sigma)
    by_hand = torch.stack([(f.double() * template.double()).sum() / (sigma * f.double().norm()) for f in weights])
    assert torch.allclose(expected.double(), by_hand, atol=1e-5)
    expect_tensor(got, expected, name=f"filter_snr(weights of shape {tuple(weights.shape)}, template "
                                     f"{tuple(template.shape)}, noise_std={sigma})")


@CONTRACT.clause("filter_snr", points=2)
def the_page_s_patch_mean(student, rng):
    """In float64, the patch mean (w = 1/p^2) with an s x s object gives the page's c s^2 / (sigma p)."""
    p = draw_int(rng, 6, 16)
    s, c, sigma = draw_int(rng, 1, p - 1), draw_float(rng, 0.2, 2.0), draw_float(rng, 0.05, 1.0)
    weights = torch.full((1, p, p), 1.0 / p**2, dtype=torch.float64)
    got = student.call("filter_snr", weights, _square(p, s, c), sigma)
    expected = torch.tensor([c * s**2 / (sigma * p)], dtype=torch.float64)
    assert torch.allclose(filter_snr(weights, _square(p, s, c), sigma), expected, rtol=1e-12)
    expect_tensor(got, expected, name=f"filter_snr(the {p} x {p} mean, a {s} x {s} object of contrast {c}, "
                                     f"noise_std={sigma})")


@CONTRACT.clause("filter_snr", points=1)
def the_matched_filter(student, rng):
    """In float64, the matched filter (w = the template) of an s x s object gives c s / sigma."""
    p = draw_int(rng, 6, 16)
    s, c, sigma = draw_int(rng, 1, p), draw_float(rng, 0.2, 2.0), draw_float(rng, 0.05, 1.0)
    template = _square(p, s, c)
    got = student.call("filter_snr", template[None], template, sigma)
    expect_tensor(got, torch.tensor([c * s / sigma], dtype=torch.float64),
                  name=f"filter_snr(the matched filter of a {s} x {s} object of contrast {c}, noise_std={sigma})")


@CONTRACT.clause("filter_snr", points=1)
def the_filter_s_scale_does_not_matter(student, rng):
    """A filter scaled by k > 0 has the same SNR; by -1, the opposite one."""
    weights = torch.randn(1, 5, 5, generator=rng, dtype=torch.float64)
    template = torch.randn(5, 5, generator=rng, dtype=torch.float64)
    k = draw_float(rng, 0.01, 100.0)
    scaled = torch.cat([weights, k * weights, -weights])
    expect_tensor(student.call("filter_snr", scaled, template, 0.5), filter_snr(scaled, template, 0.5),
                  name=f"filter_snr(a filter w, {k} w and -w, a template, noise_std=0.5)")


@CONTRACT.clause("filter_snr", points=1)
def rejects_what_has_no_noise_or_no_filter(student, rng):
    """A noise_std that is not positive, or a filter of all zeros, raises ValueError."""
    weights, template = torch.randn(2, 4, 4, generator=rng), torch.randn(4, 4, generator=rng)
    sigma = -draw_float(rng, 0.0, 1.0)
    expect_raises(lambda: student.call("filter_snr", weights, template, sigma), "ValueError",
                  name=f"filter_snr(weights, template, noise_std={sigma})")
    zero = torch.cat([weights[:1], torch.zeros(1, 4, 4)])
    expect_raises(lambda: student.call("filter_snr", zero, template, 1.0), "ValueError",
                  name="filter_snr(a filter and a filter of all zeros, template, noise_std=1.0)")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _checked(weights, template, noise_std):
    norms = weights.square().sum(dim=(-2, -1)).sqrt()
    if not noise_std > 0 or bool((norms == 0).any()) or template.shape[-2:] != weights.shape[-2:]:
        raise ValueError("bad input")
    return (weights * template).sum(dim=(-2, -1)), norms


@CONTRACT.mistake("filter_snr", """the response's noise seems taken as sigma * ||w||^2, a variance,
    not a standard deviation. The variance of sum_i w_i n_i is sigma^2 sum_i w_i^2; its standard
    deviation is the square root of that.""")
def variance_not_std(weights, template, noise_std):
    response, norms = _checked(weights, template, noise_std)
    return response / (noise_std * norms**2)


@CONTRACT.mistake("filter_snr", """the response's noise seems taken as sigma * sum_i |w_i|, as if
    the pixels' noises added up in the same direction. Independent noises add in quadrature: the
    standard deviation of sum_i w_i n_i is sigma * sqrt(sum_i w_i^2).""")
def noises_added_linearly(weights, template, noise_std):
    response, _ = _checked(weights, template, noise_std)
    return response / (noise_std * weights.abs().sum(dim=(-2, -1)))


@CONTRACT.mistake("filter_snr", """the noise seems to be sigma^2 * ||w||: noise_std is the
    standard deviation sigma itself, not a variance.""")
def sigma_squared(weights, template, noise_std):
    response, norms = _checked(weights, template, noise_std)
    return response / (noise_std**2 * norms)


@CONTRACT.mistake("filter_snr", """the noise seems to be the patch mean's, sigma / sqrt(H W),
    whatever the filter. That holds for the page's mean only; for a filter w it is
    sigma * ||w||_2.""")
def noise_of_the_mean(weights, template, noise_std):
    response, _ = _checked(weights, template, noise_std)
    return response / (noise_std / (weights.shape[-1] * weights.shape[-2]) ** 0.5)
