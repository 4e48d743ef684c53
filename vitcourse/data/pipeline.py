"""The data pipeline: labelled images as tensors, shuffled and augmented batches.

Every data set of the course (:mod:`~vitcourse.data.digits`, :mod:`~vitcourse.data.photos`,
:mod:`~vitcourse.data.synthetic`, :mod:`~vitcourse.data.cifar`) returns plain tensors, images
``(N, C, H, W)`` float32 and labels ``(N,)`` int64, wrapped in a tiny :class:`ImageData`. Small
data sets live whole on the training device and are cut into batches by :class:`Batches`, which
also augments whole batches at once (:func:`augment_batch`: random shifts, small rotations and
scalings) without a per-sample Python loop: at course scale the model, not the data pipeline,
should be the bottleneck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..validation import (
    as_device,
    check_class_labels,
    check_int,
    check_positive_int,
    check_real,
    check_tensor,
)

__all__ = ["ImageData", "Batches", "augment_batch"]


# ---- containers ------------------------------------------------------------------------------


@dataclass
class ImageData:
    """A labelled image set held as two tensors.

    Attributes:
        images: ``(N, C, H, W)`` float32 (float64 or half-precision images are converted to
            float32, the models' dtype; integer pixels are refused: scale them to floats first).
        labels: ``(N,)`` int64 in ``[0, num_classes)`` (other integer dtypes are converted).
        num_classes: number of classes.
        classes: optional class names, ``len(classes) == num_classes``.
        fill: the pixel value of the (normalised) background, used to pad shifted images.
        info: free-form metadata (e.g. the normalisation used, a suggested patch size).
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    classes: list[str] | None = None
    fill: float = 0.0
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        check_tensor(self.images, "images")
        if self.images.dim() != 4:
            raise ValueError(f"images must be a (N, C, H, W) tensor, got {tuple(self.images.shape)}")
        if not self.images.is_floating_point():
            # Converting here would train on raw 0..255 pixels: the scaling is the caller's choice.
            raise TypeError(
                f"images must be floating point (float32), got dtype {self.images.dtype}; "
                "scale integer pixels first, e.g. images.float() / 255"
            )
        self.images = self.images.float()  # the models' weights are float32 (no copy if already)
        self.num_classes = check_int(self.num_classes, "num_classes", "a positive int", lambda v: v >= 1)
        check_class_labels(self.labels, "labels", self.num_classes)
        self.labels = self.labels.long()  # what cross_entropy takes (no copy if already int64)
        if self.classes is not None:
            if isinstance(self.classes, str) or not isinstance(self.classes, (list, tuple)):
                raise TypeError(f"classes must be a list of class names or None, got {type(self.classes).__name__}")
            if len(self.classes) != self.num_classes:
                raise ValueError(f"classes has {len(self.classes)} names but num_classes={self.num_classes}")
            self.classes = list(self.classes)
        self.fill = check_real(self.fill, "fill")
        if not isinstance(self.info, dict):
            raise TypeError(f"info must be a dict, got {type(self.info).__name__}")
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"images and labels differ in length: {len(self.images)} vs {len(self.labels)}"
            )
        if self.images.device != self.labels.device:
            raise ValueError(
                f"images are on {self.images.device} but labels on {self.labels.device}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])

    def to(self, device) -> ImageData:
        """A copy on ``device`` (the same object if it is already there)."""
        device = as_device(device)
        if self.images.device == device:
            return self
        return ImageData(
            self.images.to(device), self.labels.to(device), self.num_classes, self.classes, self.fill, dict(self.info)
        )

    def subset(self, fraction: float | None = None, n: int | None = None, seed: int = 0) -> ImageData:
        """A class-stratified random subset, the same for the same ``seed``.

        ``fraction``: that fraction of each class (rounded, at least one image per class).
        ``n``: exactly ``n`` images, shared among the classes in proportion to their sizes (the
        leftover images go to the classes with the largest remainders, ties to the lower label;
        with fewer images than classes, some classes get none).
        """
        if (fraction is None) == (n is None):
            raise ValueError("give exactly one of fraction= or n=")
        seed = check_int(seed, "seed", "a non-negative int", lambda v: v >= 0)
        if len(self) == 0:
            raise ValueError("cannot take a subset of an empty ImageData (0 images)")
        labels = self.labels.cpu().numpy()
        classes, sizes = np.unique(labels, return_counts=True)
        if fraction is not None:
            fraction = check_real(fraction, "fraction", "a number in (0, 1]", lambda v: 0 < v <= 1)
            counts = np.array([max(1, int(round(fraction * size))) for size in sizes])
        else:
            n = check_int(n, "n", f"an int in [1, {len(self)}]", lambda v: 1 <= v <= len(self))
            counts = _proportional_counts(sizes, n)
        index = _stratified_take(labels, classes, counts, seed)
        index = torch.as_tensor(index, device=self.device)
        return ImageData(
            self.images[index], self.labels[index], self.num_classes, self.classes, self.fill, dict(self.info)
        )

    def loader(self, batch_size: int = 64, **kwargs) -> Batches:
        """A :class:`Batches` iterator over this data; keywords go to :class:`Batches`."""
        return Batches(self, batch_size=batch_size, **kwargs)


def _proportional_counts(sizes: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` among classes of these sizes in proportion: the largest-remainder method.

    Each class first gets the integer part of its quota ``n * size / total``; the images still
    missing go, one each, to the classes with the largest fractional parts (ties: lower label).
    Integer arithmetic keeps the quotas exact, so the split is deterministic.
    """
    total = int(sizes.sum())
    counts, remainders = np.divmod(n * sizes.astype(np.int64), total)
    order = np.lexsort((np.arange(len(sizes)), -remainders))  # largest remainder first
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def _stratified_take(labels: np.ndarray, classes: np.ndarray, counts: np.ndarray, seed: int) -> np.ndarray:
    """Sorted indices of ``counts[i]`` random members of each class ``classes[i]``."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c, k in zip(classes, counts, strict=True):
        if k > 0:  # no draw for an empty share, so the other classes' draws are unchanged
            chosen.append(rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False))
    return np.sort(np.concatenate(chosen))


# ---- augmentation ------------------------------------------------------------------------------

_AUGMENT_KEYS = ("shift", "rotate", "scale")


def _check_augment_sizes(shift=1, rotate=0.0, scale=0.0, within: str | None = None) -> None:
    """shift a non-negative int, rotate >= 0 degrees, scale in [0, 1); errors name ``within[key]`` if given."""
    name = (lambda key: f"{within}[{key!r}]") if within else (lambda key: key)
    check_int(shift, name("shift"), "a non-negative int (pixels)", lambda v: v >= 0)
    check_real(rotate, name("rotate"), "a number of degrees >= 0", lambda v: v >= 0)
    check_real(scale, name("scale"), "a number in [0, 1)", lambda v: 0 <= v < 1)


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    shift: int = 1,
    rotate: float = 0.0,
    scale: float = 0.0,
    fill: float = 0.0,
) -> torch.Tensor:
    """Randomly shift (and rotate / scale) every image of a batch, all at once.

    Args:
        x: images ``(B, C, H, W)``.
        generator: a CPU ``torch.Generator``; the random parameters are drawn from it (on the
            CPU, B numbers each) so that runs are reproducible on any device and the
            generator's state can be checkpointed.
        shift: largest translation in pixels (each image gets an integer shift in
            ``[-shift, shift]`` in x and y).
        rotate: largest rotation in degrees (uniform in ``[-rotate, rotate]``).
        scale: largest relative zoom (uniform in ``[1 - scale, 1 + scale]``).
        fill: value of the pixels that come in from outside the image.

    Returns:
        ``(B, C, H, W)``, the same dtype and device. With only ``shift`` the result is an exact
        pixel copy (integer translation by gathering); with rotation or scaling it is a
        bilinear resampling of one affine map per image (``affine_grid`` + ``grid_sample``).
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
    _check_augment_sizes(shift, rotate, scale)
    batch, _, height, width = x.shape
    offsets = torch.randint(-shift, shift + 1, (batch, 2), generator=generator)  # (dy, dx)
    if rotate == 0 and scale == 0:
        if shift == 0:
            return x
        # Pad once, then gather each image's window: rows (B, H) and columns (B, W) index into
        # the padded batch, so one advanced-indexing call crops every image at its own offset.
        padded = F.pad(x, (shift, shift, shift, shift), value=fill)
        start = (shift - offsets).to(x.device)  # shifting the content by +d = cropping at pad - d
        rows = start[:, 0:1] + torch.arange(height, device=x.device)  # (B, H)
        cols = start[:, 1:2] + torch.arange(width, device=x.device)  # (B, W)
        b = torch.arange(batch, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        return out.permute(0, 3, 1, 2).contiguous()
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(rotate)
    zoom = 1 + (torch.rand(batch, generator=generator) * 2 - 1) * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid maps output coordinates in [-1, 1] to input coordinates; a shift of d pixels
    # is 2 d / size in those units, and moving the content by +d means sampling at -d.
    tx = -offsets[:, 1].float() * 2 / width
    ty = -offsets[:, 0].float() * 2 / height
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    # grid_sample pads with zeros; shift the image so that "zero" is the background value.
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


class Batches:
    """Iterate over an :class:`ImageData` in shuffled, optionally augmented mini-batches.

    Each iteration is one epoch and yields ``(images (b, C, H, W), labels (b,))`` on the data's
    device. The order of epoch ``e`` depends only on ``(seed, e)`` (like PyTorch's
    ``DistributedSampler.set_epoch``), so every process of a distributed run draws the same
    permutation and takes its own shard ``perm[rank::world_size]``; the augmentation draws from
    a generator whose state is part of :meth:`state_dict`, so a resumed run continues exactly.

    Args:
        data: the data.
        batch_size: images per batch (per process when distributed).
        shuffle: reshuffle every epoch.
        augment: ``None``/``False`` for none, ``True`` for ``{"shift": 1}``, or a dict of
            :func:`augment_batch` keywords (``shift``, ``rotate``, ``scale``).
        drop_last: drop a last incomplete batch.
        seed: seeds the order and the augmentation.
        rank, world_size: this process's shard; the shards are padded (by repeating the
            start of the permutation) to equal length, as ``DistributedSampler`` does.
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int = 64,
        shuffle: bool = True,
        augment=None,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not isinstance(data, ImageData):
            raise TypeError(f"data must be an ImageData, got {type(data).__name__}")
        if len(data) == 0:
            raise ValueError("data is empty (0 images)")
        batch_size = check_positive_int(batch_size, "batch_size")
        world_size = check_positive_int(world_size, "world_size")
        if not (isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
        if augment is True:
            augment = {"shift": 1}
        if augment in (None, False):
            augment = {}
        if not isinstance(augment, dict) or set(augment) - set(_AUGMENT_KEYS):
            raise ValueError(f"augment must be None, True or a dict with keys shift/rotate/scale, got {augment!r}")
        # Checked here, not at the first batch, so that a bad value fails before any training.
        _check_augment_sizes(**augment, within="augment")
        check_int(seed, "seed")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = dict(augment)
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.generator = torch.Generator().manual_seed(seed * 7919 + 17 + rank)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def shard_size(self) -> int:
        """Images this process sees per epoch."""
        return math.ceil(len(self.data) / self.world_size)

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.shard_size // self.batch_size
        return math.ceil(self.shard_size / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration uses."""
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        n = len(self.data)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        total = self.shard_size * self.world_size
        if total > n:  # pad so every shard has the same number of images
            order = torch.cat([order, order[: total - n]])
        return order[self.rank :: self.world_size]

    def __iter__(self):
        order = self._order().to(self.data.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            images = self.data.images[index]
            if self.augment:
                images = augment_batch(images, self.generator, fill=self.data.fill, **self.augment)
            yield images, self.data.labels[index]
        self.epoch += 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
