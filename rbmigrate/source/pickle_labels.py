"""Stream Chroma's id -> HNSW label map out of `index_metadata.pickle`, in flat memory.

Chroma keeps the map as a pickled dict (chromadb 1.x) or as a pickled `PersistentData`
object (0.x). Loading it with `pickle` would run arbitrary code from a file we did not
write and hold three store-sized dicts in memory. This is a tiny pickle interpreter that
knows only the opcodes those files use, creates nothing but placeholders, and hands the
`id_to_label` pairs to a callback as it meets them.
"""

from __future__ import annotations

import pickletools
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

TARGET_KEY = "id_to_label"


class UnsupportedPickle(ValueError):
    """The file uses a pickle feature these stores never use; fall back to chromadb."""


class _Dict:
    __slots__ = ("target",)

    def __init__(self, target: bool) -> None:
        self.target = target


class _Opaque:
    __slots__ = ()


_MARK = object()
_OPAQUE = _Opaque()
_INT_OPS = {"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG"}
_STR_OPS = {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE"}
_OPAQUE_OPS = {
    "NONE",
    "NEWTRUE",
    "NEWFALSE",
    "BINFLOAT",
    "FLOAT",
    "EMPTY_LIST",
    "EMPTY_TUPLE",
    "SHORT_BINBYTES",
    "BINBYTES",
    "BINBYTES8",
    "EMPTY_SET",
    "BYTEARRAY8",
}


_BY_CODE = {ord(op.code): op for op in pickletools.opcodes}
CHUNK = 1 << 20
_U4 = struct.Struct("<I")
_I4 = struct.Struct("<i")
# the opcodes a label map is made of, decoded inline; pickletools reads the rest
_BINUNICODE, _SHORT_BINUNICODE, _BININT, _BININT1, _BININT2, _MARK = b"X\x8cJKM("


class _Chunks:
    """A file through a sliding 1 MB window: flat memory, and `read`/`readline` for
    pickletools' argument readers."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.buf = b""
        self.pos = 0

    def fill(self, n: int) -> None:
        """At least `n` bytes ahead of pos, unless the file ends first."""
        if len(self.buf) - self.pos < n:
            self.buf = self.buf[self.pos :] + self.fh.read(max(n, CHUNK))
            self.pos = 0

    def read(self, n: int) -> bytes:
        self.fill(n)
        out = self.buf[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def text(self, size: int) -> str:
        """The next `size` bytes as a pickle string (UTF-8, surrogates passed through)."""
        data = self.read(size)
        if len(data) < size:
            raise EOFError("a string runs past the end of the pickle")
        return data.decode("utf-8", "surrogatepass")

    def readline(self) -> bytes:
        while True:
            end = self.buf.find(b"\n", self.pos)
            if end >= 0:
                return self.read(end + 1 - self.pos)
            before = len(self.buf) - self.pos
            self.fill(before + CHUNK)
            if len(self.buf) - self.pos == before:  # end of file: no newline
                return self.read(before)


def _ops(fh: BinaryIO) -> Iterator[tuple[str, Any]]:
    """(opcode name, argument) like pickletools.genops, several times faster on the
    opcodes a label map is made of (a 100,000-record store: 400,000 opcodes)."""
    src = _Chunks(fh)
    while True:
        src.fill(9)  # an opcode and its longest fixed-size argument
        buf, pos = src.buf, src.pos
        if pos >= len(buf):
            raise EOFError("the pickle ends before STOP")
        code = buf[pos]
        src.pos = pos + 1
        if code == _BINUNICODE:
            src.pos = pos + 5
            yield "BINUNICODE", src.text(_U4.unpack_from(buf, pos + 1)[0])
        elif code == _BININT:
            src.pos = pos + 5
            yield "BININT", _I4.unpack_from(buf, pos + 1)[0]
        elif code == _SHORT_BINUNICODE:
            src.pos = pos + 2
            yield "SHORT_BINUNICODE", src.text(buf[pos + 1])
        elif code == _BININT1:
            src.pos = pos + 2
            yield "BININT1", buf[pos + 1]
        elif code == _BININT2:
            src.pos = pos + 3
            yield "BININT2", buf[pos + 1] | buf[pos + 2] << 8
        elif code == _MARK:
            yield "MARK", None
        else:
            opcode = _BY_CODE.get(code)
            if opcode is None:
                raise UnsupportedPickle(f"byte {code:#04x} is not a pickle opcode")
            reader: Callable[[Any], Any] | None = opcode.arg.reader if opcode.arg else None
            yield opcode.name, (reader(src) if reader is not None else None)


def stream_id_labels(fh: BinaryIO, emit: Callable[[str, int], None]) -> int:
    """Call emit(id, label) for each entry of the id_to_label dict; return how many."""
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}
    memo_len = 0
    emitted = 0

    def pop_mark() -> list[Any]:
        if not marks:
            raise UnsupportedPickle("unbalanced MARK")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def remember(index: int) -> None:
        top = stack[-1]
        if isinstance(top, _Dict) or top == TARGET_KEY:
            memo[index] = top

    for name, arg in _ops(fh):
        if name in _STR_OPS or name in _INT_OPS:
            stack.append(arg)
        elif name in _OPAQUE_OPS:
            stack.append(_OPAQUE)
        elif name == "EMPTY_DICT":
            stack.append(_Dict(bool(stack) and stack[-1] == TARGET_KEY))
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "SETITEMS":
            items = pop_mark()
            target = stack[-1] if stack else None
            if not isinstance(target, _Dict | _Opaque):
                raise UnsupportedPickle("SETITEMS on a non-dict")
            if isinstance(target, _Dict) and target.target:
                for i in range(0, len(items) - 1, 2):
                    key, value = items[i], items[i + 1]
                    if not isinstance(key, str) or not isinstance(value, int):
                        raise UnsupportedPickle("id_to_label holds a non str->int entry")
                    emit(key, value)
                    emitted += 1
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            target = stack[-1]
            if isinstance(target, _Dict) and target.target:
                if not isinstance(key, str) or not isinstance(value, int):
                    raise UnsupportedPickle("id_to_label holds a non str->int entry")
                emit(key, value)
                emitted += 1
        elif name in ("APPENDS", "ADDITEMS"):
            pop_mark()
        elif name == "APPEND":
            stack.pop()
        elif name in ("TUPLE", "FROZENSET"):
            pop_mark()
            stack.append(_OPAQUE)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            del stack[len(stack) - int(name[-1]) :]
            stack.append(_OPAQUE)
        elif name == "DICT":
            pop_mark()
            stack.append(_Dict(False))
        elif name in ("GLOBAL",):
            stack.append(_OPAQUE)
        elif name == "STACK_GLOBAL" or name in ("NEWOBJ", "REDUCE"):
            del stack[-2:]
            stack.append(_OPAQUE)
        elif name == "NEWOBJ_EX":
            del stack[-3:]
            stack.append(_OPAQUE)
        elif name == "BUILD":
            stack.pop()
        elif name == "MEMOIZE":
            remember(memo_len)
            memo_len += 1
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            remember(int(arg or 0))
            memo_len = max(memo_len, int(arg or 0) + 1)
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo.get(int(arg or 0), _OPAQUE))
        elif name in ("PROTO", "FRAME"):
            continue
        elif name == "STOP":
            break
        else:
            raise UnsupportedPickle(f"opcode {name} is not used by Chroma's index metadata")
    return emitted


def read_id_labels(path: Path, emit: Callable[[str, int], None]) -> int:
    with path.open("rb") as fh:
        try:
            return stream_id_labels(fh, emit)
        except (ValueError, IndexError, EOFError, struct.error) as exc:
            if isinstance(exc, UnsupportedPickle):
                raise
            raise UnsupportedPickle(f"{path.name} is damaged: {exc}") from None
