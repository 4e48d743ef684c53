"""The data-only channel between the trusted grader and the sandboxed worker.

A message is an 8-byte big-endian length followed by ``torch.save`` bytes of plain data: dicts,
lists, tuples, str, int, float, bool, None and plain CPU tensors. Both sides read with
``torch.load(..., weights_only=True)``, which rebuilds only those types (never arbitrary pickled
objects), and the reader caps the length before allocating anything.

``to_data`` (worker side) turns a student's return value into such data or refuses it;
``check_data`` (trusted side) re-checks every type exactly after loading, because whatever the
worker sends may have been forged by the student's code.
"""

from __future__ import annotations

import io
import socket
import struct
import time
import zipfile
from typing import Any

import torch

HEADER = struct.Struct("!Q")
MAX_DEPTH = 32


class ChannelError(Exception):
    """The other side closed the channel, sent too much or sent something malformed."""


class ChannelTimeout(ChannelError):
    """No complete message arrived before the deadline."""


class DisallowedValue(TypeError):
    """A value outside the data-only contract (tensor subclass, arbitrary object...)."""


_SCALARS = (int, float, bool, str, type(None))


def _numpy_scalar_types() -> tuple[type, ...]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return ()
    return (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
            np.uint64, np.float16, np.float32, np.float64)


_NUMPY_SCALARS = _numpy_scalar_types()


def to_data(value: Any, max_elements: int = 50_000_000, _depth: int = 0) -> Any:
    """A plain-data copy of ``value``: exact torch.Tensor (detached CPU copy), numbers, strings,
    None and tuples/lists/dicts of them. Raises DisallowedValue for anything else."""
    if _depth > MAX_DEPTH:
        raise DisallowedValue(f"the value is nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        if value.layout != torch.strided:
            raise DisallowedValue(f"a tensor with layout {value.layout} (only dense tensors)")
        if value.device.type == "meta":
            raise DisallowedValue("a tensor on the meta device (it has no values)")
        if value.numel() > max_elements:
            raise DisallowedValue(f"a tensor with {value.numel()} elements "
                                  f"(at most {max_elements} can be returned)")
        # clone: a view would otherwise carry its whole (possibly huge) storage along
        return value.detach().to("cpu").resolve_conj().resolve_neg().contiguous().clone()
    if kind is torch.Size:
        return tuple(int(v) for v in value)
    if kind in _NUMPY_SCALARS:
        return value.item()
    if kind in (tuple, list):
        return kind(to_data(v, max_elements, _depth + 1) for v in value)
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) not in (str, int):
                raise DisallowedValue(f"a dict key of type {type(k).__qualname__} (only str or int keys)")
            out[k] = to_data(v, max_elements, _depth + 1)
        return out
    if isinstance(value, torch.Tensor):
        raise DisallowedValue(f"a tensor subclass {kind.__module__}.{kind.__qualname__} "
                              f"(return a plain torch.Tensor)")
    raise DisallowedValue(f"a value of type {kind.__module__}.{kind.__qualname__} (only tensors, "
                          f"numbers, strings, None and tuples/lists/dicts of them)")


MAX_NODES = 1_000_000


def check_data(value: Any) -> Any:
    """Verify (trusted side) that a loaded value contains only the allowed exact types.

    Counts every node visited: pickle's memo can make a small message describe a huge graph
    (the same list referenced from everywhere), which must not stall the grader."""
    budget = [MAX_NODES]

    def walk(item: Any, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise DisallowedValue(f"a value with more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise DisallowedValue("the value is nested too deeply")
        kind = type(item)
        if kind in _SCALARS:
            return
        if kind is torch.Tensor:
            if item.layout != torch.strided or item.device.type != "cpu" or item.requires_grad:
                raise DisallowedValue("a tensor that is not a plain dense CPU tensor")
            return
        if kind in (tuple, list):
            for v in item:
                walk(v, depth + 1)
            return
        if kind is dict:
            for k, v in item.items():
                if type(k) not in (str, int):
                    raise DisallowedValue("a dict key that is not a str or int")
                walk(v, depth + 1)
            return
        raise DisallowedValue(f"a value of type {kind.__qualname__}")

    walk(value, 0)
    return value


def encode(message: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return buffer.getvalue()


def _check_archive(data: bytes) -> None:
    """torch.save writes an uncompressed zip; refuse compressed entries or entries claiming
    more bytes than the message holds (a small message must not allocate gigabytes)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = 0
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ChannelError("malformed message (compressed entry)")
                total += info.file_size
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise ChannelError("malformed message (not a torch.save archive)") from None
    if total > len(data):
        raise ChannelError("malformed message (entries larger than the message)")


def decode(data: bytes) -> Any:
    _check_archive(data)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure is the sender's fault
        raise ChannelError(f"malformed message ({type(exc).__name__})") from None


def send(sock: socket.socket, message: Any, deadline: float | None = None) -> int:
    """Send one message (before ``deadline``, if given: a peer that stops reading cannot block
    the sender forever); returns its size in bytes."""
    data = encode(message)
    if deadline is not None:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        sock.sendall(HEADER.pack(len(data)) + data)
    except TimeoutError:
        raise ChannelTimeout("timed out while sending") from None
    finally:
        if deadline is not None:
            sock.settimeout(None)
    return len(data)


def _recv_exact(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout("timed out")
            sock.settimeout(left)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(min(size - len(chunks), 1 << 20))
        except TimeoutError:
            raise ChannelTimeout("timed out") from None
        except OSError as exc:
            raise ChannelError(f"channel broken ({exc})") from None
        if not chunk:
            raise ChannelError("the other side closed the channel")
        chunks += chunk
    return bytes(chunks)


def recv(sock: socket.socket, max_bytes: int, deadline: float | None = None) -> Any:
    """Receive one message of at most ``max_bytes`` (checked before reading the body)."""
    (size,) = HEADER.unpack(_recv_exact(sock, HEADER.size, deadline))
    if size > max_bytes:
        raise ChannelError(f"a message of {size} bytes exceeds the limit of {max_bytes} bytes")
    return decode(_recv_exact(sock, size, deadline))
