"""Exercise 14 (masking): MAE's per-image shuffle with the indices that undo it, and the loss on
the hidden patches with per-patch normalised targets.

The chapter page (*Learning without labels*) draws which patches each image keeps (sorted, so the
kept tokens stay in grid order) and puts the encoder's tokens back with a scatter; its loss is the
mean squared error of the raw pixels on the hidden patches. The MAE paper's code does two things
the page does not print, and the exercise asks for them:

- ``shuffle_mask(tokens, noise, mask_ratio)``: ``tokens (B, N, D)`` and ``noise (B, N)`` ->
  ``(visible, mask, ids_restore)``. Each image's patches are ordered by rising noise and the first
  ``n_keep = max(1, round(N * (1 - mask_ratio)))`` are kept: ``visible (B, n_keep, D)`` holds
  them *in that order* (not sorted back into the grid); ``mask (B, N)`` bool is True where a patch
  is hidden, in grid order; ``ids_restore (B, N)`` int64 is the inverse permutation, so that
  gathering ``cat([visible, fill], dim=1)`` along the tokens with it puts every token back at its
  grid position (that is how MAE's decoder undoes the shuffle, mask tokens included);
- ``masked_patch_loss(pred, images, mask, patch_size, norm_pix=True, eps=1e-6)``: the mean over
  the hidden patches of each patch's mean squared error, the target being the image's patches
  (row-major, each flattened ``(C, p, p)``), each normalised by its own mean and unbiased variance
  (``(t - mean) / sqrt(var + eps)``, MAE's ``norm_pix_loss``) when ``norm_pix`` is True.
"""

from __future__ import annotations

import torch

from ...models.patches import patchify
from ...validation import check_positive_int, check_real, check_tensor
from ..contracts import Contract, draw_float, draw_int
from ..expectations import expect_items, expect_raises, expect_tensor

__all__ = ["CONTRACT", "shuffle_mask", "masked_patch_loss"]

CONTRACT = Contract(
    "14_masking",
    "MAE's per-image shuffle with its restoring indices; the loss on hidden patches with normalised targets",
    names={
        "shuffle_mask": "(tokens, noise, mask_ratio)",
        "masked_patch_loss": "(pred, images, mask, patch_size, norm_pix=True, eps=1e-06)",
    },
    reference_answers={
        "shuffle_mask": "vitcourse.course.exercises.masking.shuffle_mask",
        "masked_patch_loss": "vitcourse.course.exercises.masking.masked_patch_loss",
    },
)


# ---- the references ------------------------------------------------------------------------------


def shuffle_mask(tokens: torch.Tensor, noise: torch.Tensor,
                 mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-image random masking, driven by ``noise``.

    Args:
        tokens: ``(B, N, D)``.
        noise: ``(B, N)`` floats; each image keeps its patches of lowest noise.
        mask_ratio: the share of patches hidden, in ``[0, 1)``.

    Returns:
        ``visible (B, n_keep, D)``, the kept tokens in order of rising noise, with ``n_keep =
        max(1, round(N * (1 - mask_ratio)))``; ``mask (B, N)`` bool, True where a patch is hidden
        (grid order); ``ids_restore (B, N)`` int64, the inverse of the shuffle: ``cat([visible,
        fill], 1).gather(1, ids_restore[..., None].expand(-1, -1, D))`` is in grid order.

    Raises:
        ValueError: ``tokens`` not 3-D, ``noise`` not ``(B, N)``, or ``mask_ratio`` outside [0, 1).
    """
    check_tensor(tokens, "tokens")
    check_tensor(noise, "noise")
    if tokens.dim() != 3 or tuple(noise.shape) != tuple(tokens.shape[:2]):
        raise ValueError(f"tokens must be (B, N, D) and noise (B, N), got {tuple(tokens.shape)} and {tuple(noise.shape)}")
    check_real(mask_ratio, "mask_ratio", "a number in [0, 1)", lambda r: 0 <= r < 1)
    num_patches = tokens.shape[1]
    n_keep = max(1, round(num_patches * (1 - mask_ratio)))
    ids_shuffle = noise.argsort(dim=1)  # (B, N): the patches by rising noise
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, N): where each grid position went
    visible = tokens.gather(1, ids_shuffle[:, :n_keep, None].expand(-1, -1, tokens.shape[2]))
    mask = ids_restore >= n_keep  # hidden: shuffled beyond the kept ones
    return visible, mask, ids_restore


def masked_patch_loss(pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, patch_size: int,
                      norm_pix: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """MAE's reconstruction loss: the mean over hidden patches of the per-patch mean squared error.

    Args:
        pred: ``(B, N, C * p * p)`` predicted pixels, patches row-major, each flattened ``(C, p, p)``.
        images: ``(B, C, H, W)``, H and W multiples of ``p``.
        mask: ``(B, N)`` bool, True where a patch is hidden (at least one).
        patch_size: ``p``.
        norm_pix: normalise each target patch by its own mean and unbiased variance:
            ``(t - mean) / sqrt(var + eps)``.
        eps: added to the variance.

    Returns:
        A scalar tensor in ``pred``'s dtype.

    Raises:
        ValueError: ``pred`` not the shape of the images' patches, ``mask`` not ``(B, N)``, or no
        patch hidden.
    """
    p = check_positive_int(patch_size, "patch_size")
    for name, value in (("pred", pred), ("images", images), ("mask", mask)):
        check_tensor(value, name)
    if images.dim() != 4 or images.shape[2] % p or images.shape[3] % p:
        raise ValueError(f"images must be (B, C, H, W) with H and W multiples of {p}, got {tuple(images.shape)}")
    target = patchify(images, p).to(pred.dtype)
    if tuple(pred.shape) != tuple(target.shape) or tuple(mask.shape) != tuple(target.shape[:2]):
        raise ValueError(f"pred must be {tuple(target.shape)} and mask {tuple(target.shape[:2])}, "
                         f"got {tuple(pred.shape)} and {tuple(mask.shape)}")
    if not bool(mask.any()):
        raise ValueError("mask hides no patch: the loss over hidden patches is undefined")
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
    hidden = mask.to(pred.dtype)
    return (per_patch * hidden).sum() / hidden.sum()


# ---- helpers of the clauses ------------------------------------------------------------------------


def _expect_triple(got, expected, name: str) -> None:
    visible, mask, ids_restore = expect_items(got, ("visible", "mask", "ids_restore"), name)
    expect_tensor(visible, expected[0], name=f"{name}, visible")
    expect_tensor(mask, expected[1], name=f"{name}, mask")
    expect_tensor(ids_restore, expected[2], name=f"{name}, ids_restore")


def _restored(visible: torch.Tensor, ids_restore: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Visible tokens put back at their grid positions, NaN where hidden (MAE's unshuffle)."""
    batch, n_keep, dim = visible.shape
    fill = torch.full((batch, num_patches - n_keep, dim), float("nan"), dtype=visible.dtype)
    return torch.cat([visible, fill], dim=1).gather(1, ids_restore[..., None].expand(-1, -1, dim))


def _grid(rng) -> tuple[int, int]:
    rows = draw_int(rng, 2, 4)
    return rows, rows + draw_int(rng, 1, 2)  # never square


# ---- shuffle_mask: 6 points ------------------------------------------------------------------------------


@CONTRACT.clause("shuffle_mask", points=3)
def shuffled_visible_mask_and_restore(student, rng):
    """Random tokens, noise and ratio: the kept tokens by rising noise, the hidden mask, the inverse permutation."""
    rows, cols = _grid(rng)
    num_patches = rows * cols
    n_keep = draw_int(rng, 2, num_patches - 2)
    # N (1 - ratio) = n_keep + 0.05..0.3: round and int agree here, so that this clause grades the
    # shuffle and a truncated count loses the same point on every seed (one_patch_kept, named)
    ratio = round(1 - (n_keep + draw_float(rng, 0.05, 0.3)) / num_patches, 4)
    tokens = torch.randn(draw_int(rng, 2, 4), num_patches, draw_int(rng, 3, 6), generator=rng)
    noise = torch.rand(tokens.shape[:2], generator=rng)
    got = student.call("shuffle_mask", tokens, noise, ratio)
    expected = shuffle_mask(tokens, noise, ratio)
    # independent: the kept tokens sit at the right places, the hidden ones are the rest
    back = _restored(expected[0], expected[2], num_patches)
    assert expected[0].shape[1] == n_keep and torch.equal(back.isnan().all(-1), expected[1])
    assert torch.equal(back[~expected[1]], tokens[~expected[1]])
    _expect_triple(got, expected, f"shuffle_mask(tokens of shape {tuple(tokens.shape)}, noise, mask_ratio={ratio})")


@CONTRACT.clause("shuffle_mask", points=1)
def nothing_hidden_in_float64(student, rng):
    """mask_ratio = 0 on float64 tokens: every token kept, by rising noise; nothing hidden."""
    tokens = torch.randn(draw_int(rng, 1, 3), draw_int(rng, 5, 9), 4, generator=rng, dtype=torch.float64)
    noise = torch.rand(tokens.shape[:2], generator=rng, dtype=torch.float64)
    got = student.call("shuffle_mask", tokens, noise, 0.0)
    _expect_triple(got, shuffle_mask(tokens, noise, 0.0),
                   f"shuffle_mask(float64 tokens of shape {tuple(tokens.shape)}, noise, mask_ratio=0.0)")


@CONTRACT.clause("shuffle_mask", points=1)
def one_patch_kept(student, rng):
    """A ratio so high that one patch per image is kept: the one of lowest noise."""
    rows, cols = _grid(rng)
    tokens = torch.randn(draw_int(rng, 2, 5), rows * cols, 3, generator=rng)
    noise = torch.rand(tokens.shape[:2], generator=rng)
    ratio = 0.99
    got = student.call("shuffle_mask", tokens, noise, ratio)
    _expect_triple(got, shuffle_mask(tokens, noise, ratio),
                   f"shuffle_mask(tokens of shape {tuple(tokens.shape)}, noise, mask_ratio={ratio})")


@CONTRACT.clause("shuffle_mask", points=1)
def rejects_bad_ratio_and_noise(student, rng):
    """A mask_ratio outside [0, 1), or noise that is not (B, N), raises ValueError."""
    tokens = torch.randn(2, draw_int(rng, 4, 9), 3, generator=rng)
    noise = torch.rand(tokens.shape[:2], generator=rng)
    for ratio in (1.0, -0.25):
        expect_raises(lambda ratio=ratio: student.call("shuffle_mask", tokens, noise, ratio), "ValueError",
                      name=f"shuffle_mask(tokens of shape {tuple(tokens.shape)}, noise, mask_ratio={ratio})")
    short = noise[:, 1:]
    expect_raises(lambda: student.call("shuffle_mask", tokens, short, 0.5), "ValueError",
                  name=f"shuffle_mask(tokens of shape {tuple(tokens.shape)}, noise of shape {tuple(short.shape)}, 0.5)")


# ---- masked_patch_loss: 8 points ----------------------------------------------------------------------------


def _loss_inputs(rng, dtype=torch.float32, channels=None):
    """Images (C != p, a non-square grid), predictions and a mask with hidden and visible patches."""
    p = draw_int(rng, 2, 3)
    rows, cols = _grid(rng)
    channels = channels or (5 - p)
    images = torch.randn(draw_int(rng, 2, 3), channels, rows * p, cols * p, generator=rng, dtype=dtype)
    pred = torch.randn(images.shape[0], rows * cols, channels * p * p, generator=rng, dtype=dtype)
    mask = torch.rand(images.shape[0], rows * cols, generator=rng) < 0.6
    mask[:, 0], mask[:, -1] = True, False
    return pred, images, mask, p


def _loss_label(pred, images, p, **kwargs) -> str:
    extra = "".join(f", {k}={v}" for k, v in kwargs.items())
    return (f"masked_patch_loss(pred of shape {tuple(pred.shape)}, images of shape {tuple(images.shape)}, "
            f"mask, patch_size={p}{extra})")


def _float64_loss(pred, images, mask, p, norm_pix, eps):
    """The loss patch by patch, in float64 with Python loops: an independent reference."""
    batch, channels, height, width = images.shape
    total, count = 0.0, 0
    for b in range(batch):
        for n in range(pred.shape[1]):
            if not mask[b, n]:
                continue
            r, c = divmod(n, width // p)
            t = images[b, :, r * p:(r + 1) * p, c * p:(c + 1) * p].double().reshape(-1)
            if norm_pix:
                t = (t - t.mean()) / (t.var(unbiased=True) + eps).sqrt()
            total += float(((pred[b, n].double() - t) ** 2).mean())
            count += 1
    return total / count


@CONTRACT.clause("masked_patch_loss", points=4)
def normalised_targets_on_hidden_patches(student, rng):
    """Random images (C != p, a non-square grid), predictions and mask: per-patch normalised targets, hidden patches only."""
    pred, images, mask, p = _loss_inputs(rng)
    got = student.call("masked_patch_loss", pred, images, mask, p)
    expected = masked_patch_loss(pred, images, mask, p)
    assert abs(float(expected) - _float64_loss(pred, images, mask, p, True, 1e-6)) < 1e-4
    expect_tensor(got, expected, name=_loss_label(pred, images, p))


@CONTRACT.clause("masked_patch_loss", points=2)
def flat_patches_another_eps_float64(student, rng):
    """float64, some patches flat (zero variance), eps drawn: a float64 scalar, flat targets at zero."""
    pred, images, mask, p = _loss_inputs(rng, dtype=torch.float64)
    images[:, :, :p, :] = draw_float(rng, -1.0, 1.0)  # the first row of patches is one flat colour
    eps = draw_float(rng, 0.05, 0.5)
    got = student.call("masked_patch_loss", pred, images, mask, p, norm_pix=True, eps=eps)
    expected = masked_patch_loss(pred, images, mask, p, eps=eps)
    assert abs(float(expected) - _float64_loss(pred, images, mask, p, True, eps)) < 1e-10
    expect_tensor(got, expected, name=_loss_label(pred, images, p, eps=eps) + " in float64")


@CONTRACT.clause("masked_patch_loss", points=1)
def raw_targets_are_the_page_loss(student, rng):
    """norm_pix=False: the page's loss, the raw pixels' squared error on the hidden patches."""
    pred, images, mask, p = _loss_inputs(rng)
    got = student.call("masked_patch_loss", pred, images, mask, p, norm_pix=False)
    per_patch = ((pred - patchify(images, p)) ** 2).mean(-1)  # the page's formula
    expected = masked_patch_loss(pred, images, mask, p, norm_pix=False)
    assert torch.allclose(expected, (per_patch * mask).sum() / mask.sum(), atol=1e-5)
    expect_tensor(got, expected, name=_loss_label(pred, images, p, norm_pix=False))


@CONTRACT.clause("masked_patch_loss", points=1)
def rejects_bad_shapes_and_nothing_hidden(student, rng):
    """pred of the wrong shape, or a mask that hides nothing, raises ValueError."""
    pred, images, mask, p = _loss_inputs(rng)
    expect_raises(lambda: student.call("masked_patch_loss", pred[:, 1:], images, mask, p), "ValueError",
                  name=_loss_label(pred[:, 1:], images, p) + " (one patch short)")
    nothing = torch.zeros_like(mask)
    expect_raises(lambda: student.call("masked_patch_loss", pred, images, nothing, p), "ValueError",
                  name=_loss_label(pred, images, p) + " with no patch hidden")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _shuffle_checked(tokens, noise, mask_ratio):
    if tokens.dim() != 3 or noise.shape != tokens.shape[:2] or not 0 <= mask_ratio < 1:
        raise ValueError("bad tokens, noise or mask_ratio")
    return max(1, round(tokens.shape[1] * (1 - mask_ratio))), noise.argsort(dim=1)


def _take(tokens, ids):
    return tokens.gather(1, ids[..., None].expand(-1, -1, tokens.shape[2]))


@CONTRACT.mistake("shuffle_mask", """no patch is kept at a high ratio: the count seems
    int(N * (1 - mask_ratio)), which truncates as MAE's code does, or a round() without a floor of
    one. The docstring asks for n_keep = max(1, round(N * (1 - mask_ratio))).""")
def keep_count_truncated(tokens, noise, mask_ratio):
    _, ids_shuffle = _shuffle_checked(tokens, noise, mask_ratio)
    n_keep = int(tokens.shape[1] * (1 - mask_ratio))
    ids_restore = ids_shuffle.argsort(dim=1)
    return _take(tokens, ids_shuffle[:, :n_keep]), ids_restore >= n_keep, ids_restore


@CONTRACT.mistake("shuffle_mask", """ids_restore seems to be the shuffle itself (the patches by
    rising noise) rather than its inverse. Gathering with it must undo the shuffle: each grid
    position must find where its token went, which is the argsort of the shuffle.""")
def restore_is_the_shuffle(tokens, noise, mask_ratio):
    n_keep, ids_shuffle = _shuffle_checked(tokens, noise, mask_ratio)
    ids_restore = ids_shuffle.argsort(dim=1)
    return _take(tokens, ids_shuffle[:, :n_keep]), ids_restore >= n_keep, ids_shuffle


@CONTRACT.mistake("shuffle_mask", """the patches of highest noise seem kept. Each image keeps the
    patches of lowest noise: sort the noise in rising order.""")
def keeps_highest_noise(tokens, noise, mask_ratio):
    n_keep, _ = _shuffle_checked(tokens, noise, mask_ratio)
    ids_shuffle = noise.argsort(dim=1, descending=True)
    ids_restore = ids_shuffle.argsort(dim=1)
    return _take(tokens, ids_shuffle[:, :n_keep]), ids_restore >= n_keep, ids_restore


@CONTRACT.mistake("shuffle_mask", """the visible tokens seem sorted back into grid order (as the
    page's helper keeps them). Here they stay in the order of the shuffle, by rising noise, so
    that ids_restore can put them back together with the mask tokens.""")
def visible_in_grid_order(tokens, noise, mask_ratio):
    n_keep, ids_shuffle = _shuffle_checked(tokens, noise, mask_ratio)
    ids_restore = ids_shuffle.argsort(dim=1)
    keep = ids_shuffle[:, :n_keep].sort(dim=1).values
    return _take(tokens, keep), ids_restore >= n_keep, ids_restore


@CONTRACT.mistake("shuffle_mask", """the mask seems to be in the shuffled order (the first n_keep
    entries visible, the rest hidden), not in grid order. mask[b, n] says whether grid patch n
    is hidden: put the shuffled mask back in grid order with ids_restore.""")
def mask_in_shuffled_order(tokens, noise, mask_ratio):
    n_keep, ids_shuffle = _shuffle_checked(tokens, noise, mask_ratio)
    mask = torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1) >= n_keep
    return _take(tokens, ids_shuffle[:, :n_keep]), mask, ids_shuffle.argsort(dim=1)


@CONTRACT.mistake("shuffle_mask", """the mask seems True on the visible patches. It marks the
    hidden ones: True where a patch was dropped, as the loss uses it.""")
def mask_marks_visible(tokens, noise, mask_ratio):
    n_keep, ids_shuffle = _shuffle_checked(tokens, noise, mask_ratio)
    ids_restore = ids_shuffle.argsort(dim=1)
    return _take(tokens, ids_shuffle[:, :n_keep]), ids_restore < n_keep, ids_restore


def _loss_checked(pred, images, mask, patch_size):
    p = patch_size
    b, c, h, w = images.shape
    if h % p or w % p or pred.shape != (b, (h // p) * (w // p), c * p * p) or mask.shape != pred.shape[:2] or not mask.any():
        raise ValueError("bad shapes or nothing hidden")
    return images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(pred.shape).to(pred.dtype)


def _hidden_mean(per_patch, mask):
    return (per_patch * mask).sum() / mask.sum()


def _normalised(target, eps, unbiased=True):
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True, unbiased=unbiased)
    return (target - mean) / (var + eps).sqrt()


@CONTRACT.mistake("masked_patch_loss", """the squared error seems averaged over every patch,
    visible ones included. MAE scores only the hidden patches: average the per-patch errors over
    the patches the mask hides.""")
def every_patch(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
    target = _loss_checked(pred, images, mask, patch_size)
    target = _normalised(target, eps) if norm_pix else target
    return ((pred - target) ** 2).mean()


@CONTRACT.mistake("masked_patch_loss", """the visible patches seem scored instead of the hidden
    ones: the mask is True where a patch is hidden.""")
def visible_patches(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
    target = _loss_checked(pred, images, mask, patch_size)
    target = _normalised(target, eps) if norm_pix else target
    return _hidden_mean(((pred - target) ** 2).mean(-1), ~mask)


@CONTRACT.mistake("masked_patch_loss", """the targets seem to be the raw pixels: with norm_pix
    each target patch is normalised by its own mean and variance first.""")
def targets_not_normalised(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
    target = _loss_checked(pred, images, mask, patch_size)
    return _hidden_mean(((pred - target) ** 2).mean(-1), mask)


@CONTRACT.mistake("masked_patch_loss", """each patch seems normalised by the biased variance
    (divided by the number of pixels n). MAE uses the unbiased one, divided by n - 1, as
    torch.var does by default.""")
def biased_variance(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
    target = _loss_checked(pred, images, mask, patch_size)
    target = _normalised(target, eps, unbiased=False) if norm_pix else target
    return _hidden_mean(((pred - target) ** 2).mean(-1), mask)


@CONTRACT.mistake("masked_patch_loss", """the targets seem normalised with the whole image's mean
    and variance. The normalisation is per patch: each patch's pixels by their own statistics.""")
def normalised_per_image(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
    target = _loss_checked(pred, images, mask, patch_size)
    if norm_pix:
        flat = target.flatten(1)
        mean, var = flat.mean(1)[:, None, None], flat.var(1)[:, None, None]
        target = (target - mean) / (var + eps).sqrt()
    return _hidden_mean(((pred - target) ** 2).mean(-1), mask)


@CONTRACT.mistake("masked_patch_loss", """the target patches seem flattened channels last,
    (p, p, C), while pred follows patchify's (C, p, p) order: check how you cut the patches.""")
def channels_last_targets(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
    _loss_checked(pred, images, mask, patch_size)
    p = patch_size
    b, c, h, w = images.shape
    target = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(pred.shape).to(pred.dtype)
    target = _normalised(target, eps) if norm_pix else target
    return _hidden_mean(((pred - target) ** 2).mean(-1), mask)


@CONTRACT.mistake("masked_patch_loss", """eps seems added to the standard deviation rather than
    to the variance: divide by sqrt(var + eps).""")
def eps_on_the_std(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
    target = _loss_checked(pred, images, mask, patch_size)
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True).sqrt() + eps)
    return _hidden_mean(((pred - target) ** 2).mean(-1), mask)
