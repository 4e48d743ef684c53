"""vitcourse.data: digits, augmentation, batches, photos, synthetic tasks, CIFAR-10 on disk."""

import numpy as np
import pytest
import torch

from tests.stand_ins import write_cifar10
from vitcourse.data.cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from vitcourse.data.digits import load_digits
from vitcourse.data.photos import PHOTO_NAMES, center_crop_resize, load_photo, load_photos
from vitcourse.data.pipeline import Batches, ImageData, augment_batch
from vitcourse.data.synthetic import diagonal_2x2, two_halves_counting, two_patch_occlusion

# ---- digits -------------------------------------------------------------------------------------


def test_digits_split_is_fixed_stratified_and_disjoint():
    from sklearn.datasets import load_digits as load_sklearn_digits

    raw = load_sklearn_digits()
    train, test = load_digits(normalize=False)
    assert len(train) + len(test) == len(raw.target) == 1797
    assert train.shape == (1, 8, 8) and train.images.dtype == torch.float32
    # stratified: every class keeps (about) the same share in test as overall
    overall = np.bincount(raw.target) / len(raw.target)
    in_test = np.bincount(test.labels.numpy(), minlength=10) / len(test)
    assert np.abs(overall - in_test).max() < 0.01
    # unnormalised pixels are the raw ones / 16, and each raw image appears exactly once
    flat = {tuple(img.ravel()) for img in raw.images / 16.0}
    ours = [tuple(x.ravel()) for x in torch.cat([train.images, test.images]).double().numpy()]
    assert set(ours) <= flat
    # fixed: a second call gives the same split
    train2, test2 = load_digits(normalize=False)
    assert torch.equal(train.images, train2.images) and torch.equal(test.labels, test2.labels)


def test_digits_normalisation_and_upscale():
    train, test = load_digits(upscale=2)
    assert train.shape == (1, 16, 16)
    assert abs(train.images.mean().item()) < 1e-4 and abs(train.images.std().item() - 1) < 1e-3
    mean, std = train.info["normalize"]
    raw_train, _ = load_digits(normalize=False)
    # upscaling is nearest-neighbour: 2 x 2 blocks of the same pixel
    up = raw_train.images.repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(train.images * std + mean, up, atol=1e-5, rtol=0)
    assert train.fill == pytest.approx(-mean / std)


@pytest.mark.parametrize("bad", [0, 1.5, -1])
def test_digits_bad_upscale(bad):
    with pytest.raises(ValueError, match="upscale"):
        load_digits(upscale=bad)


def test_subset_is_stratified():
    train, _ = load_digits()
    small = train.subset(fraction=0.2, seed=3)
    counts = torch.bincount(small.labels, minlength=10)
    full = torch.bincount(train.labels, minlength=10)
    assert ((counts - 0.2 * full).abs() <= 1).all()
    with pytest.raises(ValueError, match="fraction"):
        train.subset(fraction=1.5)


# ---- augmentation -----------------------------------------------------------------------------------


def _reference_shift(x, dy, dx, fill):
    """Per-image loop: content moved by (dy, dx), new pixels = fill."""
    out = torch.full_like(x, fill)
    _, _, h, w = x.shape
    for b in range(x.shape[0]):
        for i in range(h):
            for j in range(w):
                si, sj = i - int(dy[b]), j - int(dx[b])
                if 0 <= si < h and 0 <= sj < w:
                    out[b, :, i, j] = x[b, :, si, sj]
    return out


def test_shift_matches_a_per_pixel_loop():
    x = torch.randn(6, 2, 5, 7)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    out = augment_batch(x, g1, shift=2, fill=-0.5)
    offsets = torch.randint(-2, 3, (6, 2), generator=g2)
    expected = _reference_shift(x, offsets[:, 0], offsets[:, 1], -0.5)
    assert torch.equal(out, expected)


def test_affine_augmentation_keeps_shape_and_background():
    x = torch.full((4, 1, 8, 8), -0.8)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, g, shift=1, rotate=15, scale=0.1, fill=-0.8)
    assert out.shape == x.shape
    # a constant background image stays constant (the fill comes in from outside)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="scale"):
        augment_batch(x, g, scale=1.5)


# ---- batches ----------------------------------------------------------------------------------------


def test_batches_cover_each_image_once_per_epoch():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    data = ImageData(images, torch.arange(10) % 3, 3)
    batches = Batches(data, batch_size=4, seed=1)
    assert len(batches) == 3
    seen = torch.cat([x.flatten() for x, _ in batches])
    assert sorted(seen.tolist()) == list(range(10))
    second = torch.cat([x.flatten() for x, _ in batches])
    assert not torch.equal(seen, second)  # reshuffled


def test_batches_shards_partition_the_epoch():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    data = ImageData(images, torch.zeros(10, dtype=torch.long), 1)
    shards = [Batches(data, batch_size=2, seed=5, rank=r, world_size=2) for r in range(2)]
    parts = [torch.cat([x.flatten() for x, _ in b]) for b in shards]
    assert len(parts[0]) == len(parts[1]) == 5
    assert sorted(torch.cat(parts).tolist()) == list(range(10))
    # padding to equal shards when the size is not divisible (as DistributedSampler does)
    odd = ImageData(images[:9], torch.zeros(9, dtype=torch.long), 1)
    shards = [Batches(odd, batch_size=5, seed=5, rank=r, world_size=2) for r in range(2)]
    parts = [torch.cat([x.flatten() for x, _ in b]) for b in shards]
    assert len(parts[0]) == len(parts[1]) == 5 and set(torch.cat(parts).tolist()) == set(range(9))


def test_batches_errors():
    with pytest.raises(ValueError, match="empty"):
        Batches(ImageData(torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long), 2))
    data = ImageData(torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="batch_size"):
        Batches(data, batch_size=0)
    with pytest.raises(ValueError, match="augment"):
        Batches(data, augment={"flip": True})
    with pytest.raises(ValueError, match="differ in length"):
        ImageData(torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.long), 2)


# ---- photos -----------------------------------------------------------------------------------------


def test_photos_load_and_resize():
    import skimage.data

    cat = load_photo("chelsea")
    raw = skimage.data.chelsea()
    assert cat.shape == (3, raw.shape[0], raw.shape[1])
    assert torch.allclose(cat[:, 10, 20] * 255, torch.tensor(raw[10, 20], dtype=torch.float32))
    small = center_crop_resize(cat, 224)
    assert small.shape == (3, 224, 224) and 0 <= small.min() and small.max() <= 1
    # no resize needed: the crop is exact
    side = min(raw.shape[:2])
    crop = center_crop_resize(cat, side)
    left = (raw.shape[1] - side) // 2
    assert torch.equal(crop, cat[:, :, left : left + side])
    photos = load_photos(64)
    assert set(photos) == set(PHOTO_NAMES) and all(p.shape == (3, 64, 64) for p in photos.values())
    with pytest.raises(ValueError, match="unknown photo"):
        load_photo("moon")


# ---- synthetic tasks ----------------------------------------------------------------------------------


def _cells(image, p):
    """(g, g) mean of each patch cell."""
    g = image.shape[-1] // p
    return image.reshape(g, p, g, p).mean(axis=(1, 3))


def test_two_halves_counting_label_is_number_of_far_apart_pairs():
    data = two_halves_counting(200, seed=1, noise=0.0)
    again = two_halves_counting(200, seed=1, noise=0.0)
    assert torch.equal(data.images, again.images)  # seeded
    assert data.images.shape == (200, 1, 16, 16) and data.num_classes == 4
    for image, label in zip(data.images.numpy(), data.labels.tolist(), strict=False):
        cells = _cells(image[0], 4)
        values, counts = np.unique(np.round(cells[cells > 0], 5), return_counts=True)
        assert int((counts == 2).sum()) == label  # pairs of equal identifiers
        assert len(counts) == 0 or counts.max() <= 2
        for v in values[counts == 2]:
            (r1, c1), (r2, c2) = np.argwhere(np.isclose(cells, v, atol=1e-4))
            assert max(abs(r1 - r2), abs(c1 - c2)) >= 2  # the halves lie far apart
    # a local count of painted cells does not determine the label (distractors)
    painted = (data.images.reshape(200, -1) > 0.01).sum(1) // 16
    assert any(len(set(data.labels[painted == k].tolist())) > 1 for k in painted.unique())


def test_two_patch_occlusion_label_needs_both_patches():
    data = two_patch_occlusion(400, seed=2, noise=0.0, clutter=0)
    assert data.images.shape == (400, 1, 16, 16) and set(data.labels.tolist()) == {0, 1}
    vertical = torch.tensor([1.0, -1.0, 1.0, -1.0]).repeat(4, 1)  # columns alternate: vertical stripes
    for image, label in zip(data.images[:50], data.labels[:50], strict=False):
        cells = image[0].reshape(4, 4, 4, 4).permute(0, 2, 1, 3).reshape(16, 4, 4)
        marked = [c for c in cells if c.abs().sum() > 0]
        assert len(marked) == 2
        bits = [int(torch.equal(c, vertical)) for c in marked]
        assert label.item() == bits[0] ^ bits[1]
    # each single bit alone is uninformative: P(label=1 | first patch vertical) ~ 1/2
    assert 0.35 < data.labels.float().mean().item() < 0.65


def test_diagonal_2x2_content_is_the_same_for_both_classes():
    data = diagonal_2x2(300, seed=0, noise=0.0)
    assert data.images.shape == (300, 1, 8, 8)
    cells = data.images[:, 0].reshape(300, 2, 4, 2, 4).mean(dim=(2, 4)).reshape(300, 4)
    bright = cells > 0
    assert (bright.sum(1) == 2).all()  # two bright, two dark tokens in every image
    diag = bright[:, 0] & bright[:, 3]
    anti = bright[:, 1] & bright[:, 2]
    assert torch.equal(diag, data.labels == 0) and torch.equal(anti, data.labels == 1)
    # the sorted multiset of token intensities has the same distribution in both classes
    s0 = cells[data.labels == 0].sort(1).values.mean(0)
    s1 = cells[data.labels == 1].sort(1).values.mean(0)
    torch.testing.assert_close(s0, s1, atol=0.05, rtol=0)


def test_synthetic_task_errors():
    with pytest.raises(ValueError, match="image_size"):
        two_halves_counting(10, image_size=15)
    with pytest.raises(ValueError, match="n must"):
        diagonal_2x2(0)


# ---- CIFAR-10 -----------------------------------------------------------------------------------------


def test_cifar10_reads_the_real_on_disk_format(tmp_path):
    written = write_cifar10(tmp_path)
    train, test = load_cifar10(str(tmp_path), normalize=False)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.classes == list(CIFAR10_CLASSES)
    first = written["data_batch_1"]
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major over 32 x 32
    pixel = (2, 5, 7)  # channel, row, column
    expected = first[b"data"][0][pixel[0] * 1024 + pixel[1] * 32 + pixel[2]] / 255.0
    assert train.images[0][pixel].item() == pytest.approx(expected)
    assert train.labels[:4].tolist() == first[b"labels"]
    assert test.labels.tolist() == written["test_batch"][b"labels"]
    normed, _ = load_cifar10(str(tmp_path))
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    torch.testing.assert_close(normed.images, (train.images - mean) / std)


def test_cifar10_missing_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(str(tmp_path))


def test_cifar10_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(RuntimeError, match="could not download CIFAR-10"):
        load_cifar10(str(tmp_path), download=True)


# ---- argument checks ------------------------------------------------------------------------------------


def _images_labels(n=20, classes=10):
    return torch.randn(n, 1, 4, 4), torch.arange(n) % classes


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"num_classes": "ten"}, TypeError, "num_classes"),
        ({"num_classes": 3}, ValueError, "labels go up to 9.*num_classes=3"),
        ({"labels": torch.arange(20.0) % 10}, TypeError, "labels must be integer.*float32"),
        ({"labels": torch.arange(20) % 10 - 5}, ValueError, "labels.*negative"),
        ({"labels": (torch.arange(20) % 10).numpy()}, TypeError, "labels.*torch.from_numpy"),
        ({"classes": ["a", "b", "c"]}, ValueError, "classes has 3 names.*num_classes=10"),
        ({"images": torch.zeros(20, 1, 4, 4, dtype=torch.uint8)}, TypeError, "images must be floating.*uint8"),
        ({"images": torch.zeros(20, 4, 4)}, ValueError, r"images must be a \(N, C, H, W\)"),
        ({"fill": "0"}, TypeError, "fill"),
    ],
)
def test_image_data_refuses_bad_fields(kwargs, error, match):
    images, labels = _images_labels()
    fields = {"images": images, "labels": labels, "num_classes": 10, **kwargs}
    with pytest.raises(error, match=match):
        ImageData(**fields)


def test_image_data_converts_only_what_is_lossless():
    images, labels = _images_labels()
    data = ImageData(images.double(), labels.int(), 10, ("a",) * 10)
    assert data.images.dtype == torch.float32 and torch.equal(data.images, images)
    assert data.labels.dtype == torch.int64 and torch.equal(data.labels, labels)
    assert data.classes == ["a"] * 10


def test_devices_are_checked_with_our_argument_name():
    images, labels = _images_labels()
    with pytest.raises(ValueError, match="device must be a torch device.*'gpu'"):
        ImageData(images, labels, 10).to("gpu")
    with pytest.raises(ValueError, match="device must be a torch device.*'gpu'"):
        load_digits(device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*no cuda device"):
            load_digits(device="cuda")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"test_fraction": 0.001}, ValueError, "test_fraction=0.001 would hold out 2 of the 1797"),
        ({"test_fraction": 0.999}, ValueError, "test_fraction=0.999.*train on 1;"),
        ({"test_fraction": "0.2"}, TypeError, "test_fraction"),
        ({"split_seed": -1}, ValueError, "split_seed"),
        ({"split_seed": "a"}, TypeError, "split_seed"),
    ],
)
def test_digits_bad_split(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_digits(**kwargs)


def test_digits_split_limits_are_sklearn_s():
    # the largest and smallest fractions the message allows do split (one image per class each side)
    for fraction in (10 / 1797, 1787 / 1797):
        train, test = load_digits(test_fraction=fraction, normalize=False)
        assert set(train.labels.tolist()) == set(test.labels.tolist()) == set(range(10))


def _largest_remainder(sizes, n):
    """Independent reference: exact fractions, leftovers to the largest remainders (ties: lower class)."""
    from fractions import Fraction

    quotas = [Fraction(n * s, sum(sizes)) for s in sizes]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def test_subset_n_gives_exactly_n_images_stratified():
    train, _ = load_digits()
    sizes = torch.bincount(train.labels, minlength=10).tolist()
    for n in [1, 5, 9, 10, 16, 96, 100, 199, 1000, len(train)]:
        small = train.subset(n=n, seed=1)
        assert len(small) == n
        assert torch.bincount(small.labels, minlength=10).tolist() == _largest_remainder(sizes, n)
        # the images are distinct members of the training set, with their own labels
        rows = {tuple(x.flatten().tolist()): y for x, y in zip(train.images, train.labels.tolist(), strict=True)}
        assert all(rows[tuple(x.flatten().tolist())] == y for x, y in zip(small.images, small.labels.tolist(), strict=True))
    assert torch.equal(train.subset(n=37, seed=4).images, train.subset(n=37, seed=4).images)


@pytest.mark.parametrize(
    "kwargs, error",
    [({"n": 2.5}, ValueError), ({"n": 0}, ValueError), ({"n": 10_000}, ValueError), ({"n": "10"}, TypeError),
     ({"fraction": 0}, ValueError), ({"fraction": float("nan")}, ValueError), ({"fraction": "0.5"}, TypeError)],
)  # fmt: skip
def test_subset_bad_sizes(kwargs, error):
    train, _ = load_digits()
    (name,) = kwargs
    with pytest.raises(error, match=f"^{name} must"):
        train.subset(**kwargs)


def test_augment_values_are_checked_when_the_batches_are_built():
    data = ImageData(torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long), 1)
    with pytest.raises(TypeError, match=r"augment\['rotate'\]"):
        Batches(data, augment={"rotate": "10"})
    with pytest.raises(ValueError, match=r"augment\['shift'\]"):
        Batches(data, augment={"shift": -1})
    with pytest.raises(TypeError, match="seed"):
        Batches(data, seed="a")
    with pytest.raises(TypeError, match="rotate"):
        augment_batch(data.images, torch.Generator(), rotate="10")


def test_center_crop_resize_refuses_channels_last_photos():
    with pytest.raises(ValueError, match=r"channels-last.*permute\(2, 0, 1\)"):
        center_crop_resize(torch.rand(10, 12, 3), 4)
    with pytest.raises(ValueError, match=r"channels-last.*permute\(0, 3, 1, 2\)"):
        center_crop_resize(torch.rand(2, 10, 12, 3), 4)
    with pytest.raises(TypeError, match="torch.from_numpy"):
        center_crop_resize(np.zeros((3, 10, 10)), 4)
    # channels-first images whose width happens to be 3 or 4 still work
    assert center_crop_resize(torch.rand(3, 10, 4), 4).shape == (3, 4, 4)
    assert center_crop_resize(torch.rand(1, 6, 3), 2).shape == (1, 2, 2)


def _striped_cells(image, p):
    """Row-major indices of the cells of a noise- and clutter-free occlusion image that are not blank."""
    g = image.shape[-1] // p
    cells = image[0].reshape(g, p, g, p).permute(0, 2, 1, 3).reshape(g * g, p, p)
    return [i for i, cell in enumerate(cells) if cell.abs().sum() > 0], g


def test_two_patch_occlusion_max_distance_bounds_the_pair():
    for low, high in ((3, 3), (3, 5), (5, 5)):
        data = two_patch_occlusion(60, seed=4, image_size=24, patch_size=4, clutter=0, noise=0.0,
                                   min_distance=low, max_distance=high)
        distances = set()
        for image in data.images:
            (a, b), g = _striped_cells(image, 4)
            distances.add(max(abs(a // g - b // g), abs(a % g - b % g)))
        assert distances <= set(range(low, high + 1)) and low in distances and high in distances


def test_two_patch_occlusion_orientations_give_four_versions_of_the_same_images():
    default = two_patch_occlusion(80, seed=5, image_size=20, min_distance=2)
    settings = ((0, 0), (0, 1), (1, 0), (1, 1))
    versions = [two_patch_occlusion(80, seed=5, image_size=20, min_distance=2, orientations=o) for o in settings]
    assert [v.labels.unique().tolist() for v in versions] == [[0], [1], [1], [0]]
    # each drawn image is one of its four versions: fixing the stripes changes nothing else
    for i in range(80):
        assert sum(torch.equal(v.images[i], default.images[i]) for v in versions) == 1

    def cells(images, g=5, p=4):
        return images[:, 0].reshape(-1, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(-1, g * g, p, p)

    # the versions differ inside exactly two cells; flipping the first stripe changes one of them
    differ = (cells(versions[0].images) != cells(versions[3].images)).flatten(2).any(2)
    assert (differ.sum(1) == 2).all()
    first_only = (cells(versions[0].images) != cells(versions[2].images)).flatten(2).any(2)
    assert (first_only.sum(1) == 1).all() and (first_only <= differ).all()
    # without noise, flipping a stripe's orientation transposes its cell
    clean = [two_patch_occlusion(10, seed=6, clutter=0, noise=0.0, orientations=o) for o in settings]
    for v0, v2 in zip(clean[0].images, clean[2].images, strict=True):
        (a, _), _ = _striped_cells(v0, 4)
        r, c = divmod(a, 4)
        assert torch.equal(v2[0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], v0[0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].T)


def test_two_patch_occlusion_refuses_impossible_distances_and_orientations():
    with pytest.raises(ValueError, match="min_distance"):
        two_patch_occlusion(5, image_size=16, min_distance=4)  # a 4 x 4 grid has no pair 4 cells apart
    with pytest.raises(ValueError, match="max_distance"):
        two_patch_occlusion(5, min_distance=3, max_distance=2)
    with pytest.raises(ValueError, match=r"orientations\[1\]"):
        two_patch_occlusion(5, orientations=(0, 2))
    with pytest.raises(ValueError, match="orientations"):
        two_patch_occlusion(5, orientations=(1,))
    for bad in ("01", 1, (True, 0)):
        with pytest.raises(TypeError, match="orientations"):
            two_patch_occlusion(5, orientations=bad)
