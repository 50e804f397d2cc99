"""Read vectors out of a persisted Chroma HNSW segment (hnswlib's on-disk layout).

`header.bin` describes `data_level0.bin`: one fixed-size element per stored vector holding
its level-0 links, the vector (float32) and its label (uint64). Cosine collections store
unit vectors and keep each norm in `length.bin`; chromadb returns unit × norm, and so do we.
Files are read with positioned reads in small chunks, so memory stays flat.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbmigrate.records.model import Vector

_HEADER_V1 = struct.Struct("<iQQQQQQiIQQQdQ")  # chroma-hnswlib: int32 version first
_HEADER_V0 = struct.Struct("<QQQQQQiIQQQdQ")  # upstream hnswlib


class HnswFormatError(ValueError):
    pass


@dataclass(frozen=True)
class HnswHeader:
    max_elements: int
    element_count: int
    size_per_element: int
    label_offset: int
    data_offset: int


def read_header(path: Path) -> HnswHeader:
    raw = path.read_bytes()
    if len(raw) == _HEADER_V1.size:
        fields = _HEADER_V1.unpack(raw)[1:]
    elif len(raw) == _HEADER_V0.size:
        fields = _HEADER_V0.unpack(raw)
    else:
        raise HnswFormatError(f"{path.name} has {len(raw)} bytes; expected {_HEADER_V1.size}")
    _off0, max_elements, count, size, label_offset, data_offset = fields[:6]
    if count > max_elements or label_offset + 8 > size or data_offset >= label_offset:
        raise HnswFormatError(f"{path.name} describes an impossible layout")
    return HnswHeader(max_elements, count, size, label_offset, data_offset)


class HnswVectors:
    """Positioned access to the vectors of one persisted segment."""

    def __init__(self, folder: Path, dimension: int, cosine: bool) -> None:
        self.folder = folder
        self.header = read_header(folder / "header.bin")
        self.dimension = dimension
        if self.header.label_offset - self.header.data_offset != 4 * dimension:
            raise HnswFormatError(
                f"segment {folder.name} stores {(self.header.label_offset - self.header.data_offset) // 4}"
                f"-d vectors, the collection says {dimension}"
            )
        data = folder / "data_level0.bin"
        needed = self.header.element_count * self.header.size_per_element
        if data.stat().st_size < needed:
            raise HnswFormatError(
                f"{data.name} in segment {folder.name} is truncated ({data.stat().st_size} of {needed} bytes)"
            )
        self._fd = os.open(data, os.O_RDONLY)
        self._lengths_fd: int | None = None
        if cosine and (folder / "length.bin").exists():
            self._lengths_fd = os.open(folder / "length.bin", os.O_RDONLY)

    def close(self) -> None:
        os.close(self._fd)
        if self._lengths_fd is not None:
            os.close(self._lengths_fd)

    def iter_labels(self, chunk: int = 4096) -> Iterator[tuple[int, int]]:
        """(label, position) of every stored element, in position order."""
        h = self.header
        for start in range(0, h.element_count, chunk):
            n = min(chunk, h.element_count - start)
            raw = os.pread(self._fd, n * h.size_per_element, start * h.size_per_element)
            block = np.frombuffer(raw, dtype=np.uint8).reshape(n, h.size_per_element)
            labels = block[:, h.label_offset : h.label_offset + 8].copy().view("<u8").ravel()
            for i, label in enumerate(labels.tolist()):
                yield int(label), start + i

    def vector(self, position: int) -> Vector:
        h = self.header
        offset = position * h.size_per_element + h.data_offset
        raw = os.pread(self._fd, 4 * self.dimension, offset)
        vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if self._lengths_fd is not None:
            norm = np.frombuffer(os.pread(self._lengths_fd, 4, 4 * position), dtype="<f4")
            if norm.size == 1:
                vec = (vec * norm[0]).astype(np.float32)
        return vec
