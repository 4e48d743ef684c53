"""The seeded synthetic tasks of chapter 1, each built so that a *local* model cannot solve it.

- :func:`two_halves_counting`: count objects whose two halves lie far apart;
- :func:`two_patch_occlusion`: the XOR of two distant striped patches;
- :func:`diagonal_2x2`: which diagonal holds the two bright tokens (needs positions).
"""

from __future__ import annotations

import numpy as np
import torch

from ..validation import check_int, check_positive_int
from .pipeline import ImageData

__all__ = ["two_halves_counting", "two_patch_occlusion", "diagonal_2x2"]


def _check_task_args(n, image_size, patch_size):
    check_positive_int(n, "n")
    check_positive_int(patch_size, "patch_size")
    check_int(image_size, "image_size", f"a positive multiple of patch_size={patch_size}", lambda v: v > 0 and v % patch_size == 0)


def _cells_far_apart(rng: np.random.Generator, grid: int, taken: set, min_distance: int, max_distance: int | None = None):
    """Two free grid cells at Chebyshev distance in ``[min_distance, max_distance]`` (None if there are none)."""
    far = grid if max_distance is None else max_distance
    free = [(r, c) for r in range(grid) for c in range(grid) if (r, c) not in taken]
    pairs = [
        (a, b)
        for i, a in enumerate(free)
        for b in free[i + 1 :]
        if min_distance <= max(abs(a[0] - b[0]), abs(a[1] - b[1])) <= far
    ]
    if not pairs:
        return None
    return pairs[rng.integers(len(pairs))]


def two_halves_counting(
    n: int = 1000,
    seed: int = 0,
    image_size: int = 16,
    patch_size: int = 4,
    max_objects: int = 3,
    max_distractors: int = 2,
    min_distance: int = 2,
    noise: float = 0.05,
) -> ImageData:
    """Count objects whose two halves lie far apart; lone halves do not count.

    The image is a ``g x g`` grid of patch cells (``g = image_size / patch_size``). An object is
    two cells painted with the same identifier (an intensity level in (0, 1]), placed at least
    ``min_distance`` cells apart. Distractors are lone cells whose identifier no other cell
    shares. The label is the number of complete objects, ``K`` in ``0..max_objects``.

    Why it needs global attention: a patch on its own looks the same whether or not its partner
    exists, so a model that counts painted patches locally sees ``2K + D`` of them with ``D``
    random and over-counts; only comparing identifiers across the image (pairing halves)
    gives ``K``.

    Returns:
        :class:`ImageData` with images ``(n, 1, image_size, image_size)`` and labels ``(n,)``,
        ``num_classes = max_objects + 1``.
    """
    _check_task_args(n, image_size, patch_size)
    grid = image_size // patch_size
    levels = max_objects + max_distractors
    if 2 * max_objects + max_distractors > grid * grid:
        raise ValueError(f"{max_objects} objects and {max_distractors} distractors do not fit a {grid}x{grid} grid")
    rng = np.random.default_rng(seed)
    # The identifiers: evenly spaced, distinct intensities.
    ids = np.linspace(1.0 / levels, 1.0, levels)
    images = np.zeros((n, 1, image_size, image_size), dtype=np.float32)
    labels = np.zeros(n, dtype=np.int64)

    def paint(i, cell, value):
        r, c = cell
        images[i, 0, r * patch_size : (r + 1) * patch_size, c * patch_size : (c + 1) * patch_size] = value

    for i in range(n):
        k = int(rng.integers(0, max_objects + 1))
        d = int(rng.integers(0, max_distractors + 1))
        codes = rng.permutation(ids)[: k + d]
        taken: set = set()
        placed = 0
        for j in range(k):
            pair = _cells_far_apart(rng, grid, taken, min_distance)
            if pair is None:
                break
            for cell in pair:
                paint(i, cell, codes[j])
                taken.add(cell)
            placed += 1
        free = [(r, c) for r in range(grid) for c in range(grid) if (r, c) not in taken]
        for j, idx in enumerate(rng.permutation(len(free))[:d]):
            paint(i, free[idx], codes[k + j])
        labels[i] = placed
    images += noise * rng.standard_normal(images.shape).astype(np.float32)
    return ImageData(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        max_objects + 1,
        [str(c) for c in range(max_objects + 1)],
        info={"task": "two_halves_counting", "patch_size": patch_size, "seed": seed},
    )


def _stripes(patch_size: int, vertical: bool) -> np.ndarray:
    """A ``p x p`` pattern of alternating +1/-1 stripes."""
    line = np.where(np.arange(patch_size) % 2 == 0, 1.0, -1.0).astype(np.float32)
    pattern = np.tile(line, (patch_size, 1))  # columns alternate: vertical stripes
    return pattern if vertical else pattern.T


def two_patch_occlusion(
    n: int = 1000,
    seed: int = 0,
    image_size: int = 16,
    patch_size: int = 4,
    clutter: int = 4,
    min_distance: int = 2,
    noise: float = 0.1,
    max_distance: int | None = None,
    orientations: tuple[int, int] | None = None,
) -> ImageData:
    """Two distant evidence patches, each alone uninformative; the label needs both.

    Two cells at least ``min_distance`` cells apart carry a striped pattern, vertical (bit 1) or
    horizontal (bit 0); the label is the XOR of the two bits (same orientation -> 0, different
    -> 1). ``clutter`` other cells hold random noise blocks that occlude the background, and
    every pixel gets Gaussian noise. Since each bit is a fair coin, one patch alone predicts
    the label at chance: a model must relate the two distant patches.

    Args:
        min_distance, max_distance: the Chebyshev distance between the two striped cells (the
            larger of the row and the column offsets, in cells) lies in this range;
            ``max_distance=None`` allows up to the grid's side, and ``min_distance ==
            max_distance == d`` puts every pair exactly ``d`` cells apart.
        orientations: ``(first, second)``, each 0 (horizontal) or 1 (vertical), fixes the two
            stripes (the first in row-major order first) instead of drawing them. Everything else
            (the cells, the clutter, the noise) is drawn exactly as without it, so one seed with
            the four settings gives four versions of the same images that differ only inside the
            two striped cells, labelled same, different, different, same.

    Returns:
        :class:`ImageData`, images ``(n, 1, image_size, image_size)``, 2 classes
        ("same", "different").
    """
    _check_task_args(n, image_size, patch_size)
    grid = image_size // patch_size
    if clutter + 2 > grid * grid:
        raise ValueError(f"clutter={clutter} does not fit a {grid}x{grid} grid")
    check_int(min_distance, "min_distance", f"an int in [1, {grid - 1}] on a {grid}x{grid} grid", lambda v: 1 <= v < grid)
    if max_distance is not None:
        check_int(max_distance, "max_distance", f"None or an int >= min_distance={min_distance}", lambda v: v >= min_distance)
    if orientations is not None:
        if isinstance(orientations, (str, bytes)) or not isinstance(orientations, (tuple, list)):
            raise TypeError(f"orientations must be None or a pair of 0 / 1, got {orientations!r}")
        if len(orientations) != 2:
            raise ValueError(f"orientations must be a pair (first, second), got {orientations!r}")
        for k, value in enumerate(orientations):
            check_int(value, f"orientations[{k}]", "0 (horizontal) or 1 (vertical)", lambda v: v in (0, 1))
    rng = np.random.default_rng(seed)
    patterns = [_stripes(patch_size, False), _stripes(patch_size, True)]
    images = np.zeros((n, 1, image_size, image_size), dtype=np.float32)
    labels = np.zeros(n, dtype=np.int64)
    p = patch_size
    for i in range(n):
        a, b = _cells_far_apart(rng, grid, set(), min_distance, max_distance)
        bits = rng.integers(0, 2, size=2)  # drawn even when fixed, so that the rest of the stream is the same
        if orientations is not None:
            bits = np.asarray(orientations)
        for (r, c), bit in zip((a, b), bits, strict=False):
            images[i, 0, r * p : (r + 1) * p, c * p : (c + 1) * p] = patterns[bit]
        free = [(r, c) for r in range(grid) for c in range(grid) if (r, c) not in (a, b)]
        for idx in rng.permutation(len(free))[:clutter]:
            r, c = free[idx]
            images[i, 0, r * p : (r + 1) * p, c * p : (c + 1) * p] = rng.uniform(-1, 1, (p, p))
        labels[i] = int(bits[0] ^ bits[1])
    images += noise * rng.standard_normal(images.shape).astype(np.float32)
    return ImageData(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        2,
        ["same", "different"],
        info={"task": "two_patch_occlusion", "patch_size": patch_size, "seed": seed},
    )


def diagonal_2x2(
    n: int = 1000,
    seed: int = 0,
    patch_size: int = 4,
    noise: float = 0.2,
) -> ImageData:
    """The 2 x 2 diagonal task: which diagonal holds the two bright tokens?

    The image is a 2 x 2 grid of ``p x p`` patches: two are bright (intensity in [0.6, 1.0],
    each its own), two are dark (in [-1.0, -0.6]). Label 0: the bright ones are on the main
    diagonal (top-left, bottom-right); label 1: on the anti-diagonal. Every image holds the
    same *kind* of content, two bright and two dark tokens, so a model that ignores positions
    (a bag of patch tokens, e.g. a ViT without position embeddings) cannot beat chance; any
    position signal solves it.

    Returns:
        :class:`ImageData`, images ``(n, 1, 2p, 2p)``, 2 classes ("diagonal", "anti-diagonal").
    """
    _check_task_args(n, 2 * patch_size, patch_size)
    rng = np.random.default_rng(seed)
    p = patch_size
    labels = rng.integers(0, 2, size=n)
    bright = rng.uniform(0.6, 1.0, size=(n, 2)).astype(np.float32)
    dark = -rng.uniform(0.6, 1.0, size=(n, 2)).astype(np.float32)
    # cell values in row-major order (TL, TR, BL, BR)
    cells = np.where(
        labels[:, None] == 0,
        np.stack([bright[:, 0], dark[:, 0], dark[:, 1], bright[:, 1]], 1),
        np.stack([dark[:, 0], bright[:, 0], bright[:, 1], dark[:, 1]], 1),
    ).reshape(n, 1, 2, 2)
    images = np.repeat(np.repeat(cells, p, axis=2), p, axis=3).astype(np.float32)
    images += noise * rng.standard_normal(images.shape).astype(np.float32)
    return ImageData(
        torch.from_numpy(images),
        torch.from_numpy(labels.astype(np.int64)),
        2,
        ["diagonal", "anti-diagonal"],
        info={"task": "diagonal_2x2", "patch_size": patch_size, "seed": seed},
    )
