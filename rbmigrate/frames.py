"""Framed messages over a child process's pipes: one kind byte, a length, the payload."""

from __future__ import annotations

import struct
from typing import IO

HEADER = struct.Struct("!cI")  # kind, payload length


def write_frame(out: IO[bytes], kind: bytes, payload: bytes) -> None:
    out.write(HEADER.pack(kind, len(payload)))
    out.write(payload)
    out.flush()


def read_frame(inp: IO[bytes]) -> tuple[bytes, bytes] | None:
    """One (kind, payload), or None at a clean end of stream."""
    head = inp.read(HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise EOFError("the stream ended inside a frame header")
    kind, size = HEADER.unpack(head)
    payload = inp.read(size)
    if len(payload) < size:
        raise EOFError("the stream ended inside a frame")
    return kind, payload
