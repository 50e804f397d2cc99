"""rejects.jsonl: every rejected record with its code and its original data, replayable.

Lines are written and fsynced before the batch's transaction commits; the checkpoint stores
the file's length, so a resumed run first cuts the file back to what was committed and
nothing is listed twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rbmigrate.errors import ConfigError
from rbmigrate.records.model import SourceRecord


class RejectsLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.chmod(path, 0o600)
        self.fh = os.fdopen(fd, "r+b")
        self.fh.seek(0, os.SEEK_END)

    @property
    def offset(self) -> int:
        return self.fh.tell()

    def truncate(self, offset: int) -> None:
        self.fh.seek(offset)
        self.fh.truncate()

    def write(self, entries: Iterable[dict[str, Any]]) -> int:
        data = b"".join(
            json.dumps(e, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"
            for e in entries
        )
        if data:
            self.fh.write(data)
            self.fh.flush()
            os.fsync(self.fh.fileno())
        return self.offset

    def close(self) -> None:
        self.fh.close()


def entry(record: SourceRecord, code: str, message: str) -> dict[str, Any]:
    return {
        "collection": record.collection,
        "source_id": record.id,
        "code": code,
        "message": message,
        "record": record.original(),
    }


def read_rejects(path: Path) -> Iterator[SourceRecord]:
    """Records of a rejects.jsonl, for `migrate --retry-rejects FILE`."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}.") from None
    with fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw.decode("utf-8", "surrogatepass"))
                rec = data["record"]
                emb = rec.get("embedding")
                yield SourceRecord(
                    collection=data["collection"],
                    id=rec["id"],
                    document=rec.get("document"),
                    metadata=rec.get("metadata"),
                    embedding=None if emb is None else np.asarray(emb, dtype=np.float32),
                    position=number,
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{path} line {number} is not a rejects.jsonl entry ({exc})."
                ) from None
