"""Offline data for the course: digits, real photos, synthetic tasks, and CIFAR-10 when asked.

Everything here returns plain tensors, images ``(N, C, H, W)`` float32 and labels ``(N,)``
int64, wrapped in a tiny :class:`ImageData`. Small data sets live whole on the training device
and are cut into batches by :class:`Batches`, which also augments whole batches at once (random
shifts, small rotations and scalings) without a per-sample Python loop: at course scale the
model, not the data pipeline, should be the bottleneck.

- :func:`load_digits`: scikit-learn's 1797 handwritten 8 x 8 digits (bundled, offline) with a
  fixed stratified train/test split.
- :func:`load_photo` / :func:`load_photos`: scikit-image's bundled colour photographs, and
  :func:`center_crop_resize` to bring them to a model's input size.
- :func:`two_halves_counting`, :func:`two_patch_occlusion`, :func:`diagonal_2x2`: the seeded
  synthetic tasks of chapter 1, each built so that a *local* model cannot solve it.
- :func:`load_cifar10`: CIFAR-10 from its python pickle batches (downloaded by torchvision only
  when ``download=True``).
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .validation import as_device, check_class_labels, check_int, check_real, check_tensor

__all__ = [
    "ImageData",
    "Batches",
    "augment_batch",
    "load_digits",
    "load_photo",
    "load_photos",
    "center_crop_resize",
    "PHOTO_NAMES",
    "two_halves_counting",
    "two_patch_occlusion",
    "diagonal_2x2",
    "load_cifar10",
    "CIFAR10_CLASSES",
]


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
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
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


# ---- digits --------------------------------------------------------------------------------------

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

    if not isinstance(upscale, int) or upscale < 1:
        raise ValueError(f"upscale must be a positive int, got {upscale!r}")
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


# ---- real photos -----------------------------------------------------------------------------------

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
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
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


# ---- synthetic tasks ----------------------------------------------------------------------------


def _check_task_args(n, image_size, patch_size):
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(patch_size, int) or patch_size <= 0:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    if not isinstance(image_size, int) or image_size <= 0 or image_size % patch_size:
        raise ValueError(f"image_size must be a positive multiple of patch_size={patch_size}, got {image_size!r}")


def _cells_far_apart(rng: np.random.Generator, grid: int, taken: set, min_distance: int):
    """Two free grid cells at Chebyshev distance >= min_distance (None if there are none)."""
    free = [(r, c) for r in range(grid) for c in range(grid) if (r, c) not in taken]
    pairs = [
        (a, b)
        for i, a in enumerate(free)
        for b in free[i + 1 :]
        if max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= min_distance
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
) -> ImageData:
    """Two distant evidence patches, each alone uninformative; the label needs both.

    Two cells at least ``min_distance`` cells apart carry a striped pattern, vertical (bit 1) or
    horizontal (bit 0); the label is the XOR of the two bits (same orientation -> 0, different
    -> 1). ``clutter`` other cells hold random noise blocks that occlude the background, and
    every pixel gets Gaussian noise. Since each bit is a fair coin, one patch alone predicts
    the label at chance: a model must relate the two distant patches.

    Returns:
        :class:`ImageData`, images ``(n, 1, image_size, image_size)``, 2 classes
        ("same", "different").
    """
    _check_task_args(n, image_size, patch_size)
    grid = image_size // patch_size
    if clutter + 2 > grid * grid:
        raise ValueError(f"clutter={clutter} does not fit a {grid}x{grid} grid")
    rng = np.random.default_rng(seed)
    patterns = [_stripes(patch_size, False), _stripes(patch_size, True)]
    images = np.zeros((n, 1, image_size, image_size), dtype=np.float32)
    labels = np.zeros(n, dtype=np.int64)
    p = patch_size
    for i in range(n):
        a, b = _cells_far_apart(rng, grid, set(), min_distance)
        bits = rng.integers(0, 2, size=2)
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


# ---- CIFAR-10 -------------------------------------------------------------------------------------

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)


def _read_cifar_batches(folder: str, names) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            # CIFAR's own format: a pickled dict with b"data" (N, 3072) uint8 in (C, H, W)
            # order and b"labels" (a list of N ints); read from a folder the user chose.
            entry = pickle.load(f, encoding="bytes")
        images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[b"labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def load_cifar10(
    root: str = "data",
    download: bool = False,
    device="cpu",
    normalize: bool = True,
    timeout: float = 30.0,
) -> tuple[ImageData, ImageData]:
    """CIFAR-10 (50000 train / 10000 test, 32 x 32 RGB) as ``(train, test)`` :class:`ImageData`.

    Reads the python pickle batches in ``root/cifar-10-batches-py/`` (``data_batch_1..5``,
    ``test_batch``, ``batches.meta``). When they are missing, it downloads them through
    torchvision only if ``download=True`` (about 170 MB, e.g. in Colab), with a network timeout
    of ``timeout`` seconds, so an offline machine gets a clear error instead of a hang.

    Returns:
        images ``(N, 3, 32, 32)`` float32 (standardised per channel with CIFAR-10's usual mean
        and std, or in [0, 1] with ``normalize=False``), labels ``(N,)``.

    Raises:
        FileNotFoundError: the files are not there and ``download`` is False.
        RuntimeError: the download failed (no network, timeout, corrupt archive).
    """
    device = as_device(device)
    folder = os.path.join(root, _CIFAR_DIR)
    needed = [*_CIFAR_TRAIN, *_CIFAR_TEST, "batches.meta"]
    missing = [name for name in needed if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        if not download:
            raise FileNotFoundError(
                f"CIFAR-10 not found in {os.path.abspath(folder)} (missing: {', '.join(missing)}); "
                "pass download=True to fetch it (about 170 MB, needs the internet)"
            )
        _download_cifar10(root, timeout)
    train_x, train_y = _read_cifar_batches(folder, _CIFAR_TRAIN)
    test_x, test_y = _read_cifar_batches(folder, _CIFAR_TEST)
    with open(os.path.join(folder, "batches.meta"), "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[b"label_names"]]

    def to_data(x, y):
        images = torch.from_numpy(x).float() / 255.0
        if normalize:
            mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
            images = (images - mean) / std
        info = {"normalize": (CIFAR10_MEAN, CIFAR10_STD) if normalize else None}
        return ImageData(images, torch.from_numpy(y), len(classes), classes, 0.0, info).to(device)

    return to_data(train_x, train_y), to_data(test_x, test_y)


def _download_cifar10(root: str, timeout: float) -> None:
    import socket

    try:
        from torchvision.datasets import CIFAR10
    except ImportError as error:  # pragma: no cover - torchvision is a dev dependency
        raise RuntimeError("downloading CIFAR-10 needs torchvision: pip install torchvision") from error
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        CIFAR10(root, train=True, download=True)
    except Exception as error:
        raise RuntimeError(
            f"could not download CIFAR-10 into {os.path.abspath(root)}: {error}. "
            "Check the internet connection, or copy cifar-10-batches-py/ there by hand."
        ) from error
    finally:
        socket.setdefaulttimeout(previous)
