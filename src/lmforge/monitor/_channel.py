"""The channel between the serving process and its store-writer process: one JSON object per line.

Both ends encode and decode the frames themselves (``json``, never pickle), so the writer never
turns bytes from the pipe into anything but plain data: a line that is not one JSON object
(bytes of a pickle, a bare list, ``NaN``) is refused with :class:`ChannelError`, and a line longer
than :data:`MAX_FRAME` is refused before it is buffered whole.
"""

from __future__ import annotations

import json
import os
import select
from typing import Any

__all__ = ["MAX_FRAME", "ChannelError", "FrameReader", "decode", "encode", "write_frame"]

MAX_FRAME = 64 * 1024 * 1024
"""Longest frame either end accepts, in bytes (a chunk of 500 long texts is well under 1 MiB)."""


class ChannelError(ValueError):
    """A frame on the writer's channel is not one JSON object (or is too long)."""


def _no_constants(name: str) -> Any:
    raise ChannelError(f"non-finite number {name} in a monitor frame")


def encode(frame: dict[str, Any]) -> bytes:
    """One frame as a line of strict JSON (``NaN`` and infinities are refused: ``ValueError``)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """The frame in one line.

    Raises:
        ChannelError: the line is not UTF-8 text holding exactly one JSON object.
    """
    try:
        frame = json.loads(line.decode("utf-8"), parse_constant=_no_constants)
    except ChannelError:
        raise
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ChannelError(f"a monitor frame is not JSON text ({type(exc).__name__})") from None
    if not isinstance(frame, dict):
        raise ChannelError(f"a monitor frame must be a JSON object, got {type(frame).__name__}")
    return frame


def write_frame(fd: int, frame: dict[str, Any]) -> None:
    """Write one frame to a pipe, all of it (blocks while the pipe is full; ``OSError`` when it broke)."""
    view = memoryview(encode(frame))
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FrameReader:
    """Frames read from a pipe's file descriptor, split on newlines."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()
        self.eof = False

    def read(self, timeout: float | None) -> list[dict[str, Any]]:
        """The frames that arrived within ``timeout`` seconds (None: wait for some); [] at end of file.

        Raises:
            ChannelError: a frame is malformed or longer than :data:`MAX_FRAME`.
        """
        if self.eof:
            return []
        if timeout is not None:
            ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
            if not ready:
                return []
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.eof = True
            return []
        self._buf += chunk
        *lines, rest = self._buf.split(b"\n")
        if len(rest) > MAX_FRAME:
            raise ChannelError(f"a monitor frame is longer than {MAX_FRAME} bytes")
        self._buf = bytearray(rest)
        return [decode(bytes(line)) for line in lines if line]
