"""The child side of encoder_process: `python -m rbmigrate.encoder_worker MODEL DEVICE BATCH
THREADS` (THREADS 0: torch's default, one per core).

Loads the model, answers R{dimension}, then for each T[texts] frame answers the float32
vectors (or E{message}); a C frame (b"1" busy, b"0" idle) sets how many cores it may use and
gets no answer. Exits when its stdin ends.
"""

from __future__ import annotations

import json
import sys

from rbmigrate.embeddings import Embedder, EmbeddingError
from rbmigrate.errors import RbmigrateError
from rbmigrate.frames import read_frame, write_frame


def describe(exc: BaseException) -> bytes:
    if not isinstance(exc, RbmigrateError):
        exc = EmbeddingError(f"encoding failed: {type(exc).__name__}: {exc}")
    return json.dumps(exc.as_dict()).encode()


def serve(name: str, device: str, batch_size: int, threads: int = 0) -> int:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames may reach the parent's pipe
    embedder = Embedder(name, device, batch_size, threads=threads)
    try:
        write_frame(out, b"R", json.dumps({"dimension": embedder.dimension}).encode())
    except BrokenPipeError:
        return 0
    except Exception as exc:
        write_frame(out, b"E", describe(exc))
        return 1
    while True:
        frame = read_frame(inp)
        if frame is None:
            return 0
        if frame[0] == b"C":
            embedder.share_cores(frame[1] == b"1")
            continue
        try:
            vectors = embedder.encode(json.loads(frame[1]))
        except Exception as exc:
            write_frame(out, b"E", describe(exc))
            continue
        try:
            write_frame(out, b"V", vectors.tobytes())
        except BrokenPipeError:  # the migration is gone
            return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
