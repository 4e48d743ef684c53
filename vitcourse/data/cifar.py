"""CIFAR-10 from its python pickle batches, downloaded by torchvision only when asked (Colab)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from ..validation import as_device
from .pipeline import ImageData

__all__ = ["load_cifar10", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD"]


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
