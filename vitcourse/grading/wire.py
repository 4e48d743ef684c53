"""The wire between the trusted grader and the sandboxed worker: framing, and nothing else.

A message is an 8-byte big-endian length followed by ``torch.save`` bytes. Both sides read with
``torch.load(..., weights_only=True)``, which rebuilds only plain data (dicts, lists, tuples, str,
int, float, bool, None, tensors), never arbitrary pickled objects, and the reader caps the length
before allocating anything and refuses archives that claim more bytes than they hold. What a
message may contain, and the exact checks of what arrives, are ``vitcourse.course.values``'.
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

# One byte on the zygote's control socket (the grader's orders; ``untrusted.worker`` obeys them)
CONTROL_RUN = b"R"  # a new child for a submission; two file descriptors come with it
CONTROL_KILL = b"K"  # kill the running child
CONTROL_QUIT = b"Q"  # the zygote exits


class ChannelError(Exception):
    """The other side closed the channel, sent too much or sent something malformed."""


class ChannelTimeout(ChannelError):
    """No complete message arrived before the deadline."""


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
