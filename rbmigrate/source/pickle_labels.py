"""Stream Chroma's id -> HNSW label map out of `index_metadata.pickle`, in flat memory.

Chroma keeps the map as a pickled dict (chromadb 1.x) or as a pickled `PersistentData`
object (0.x). Loading it with `pickle` would run arbitrary code from a file we did not
write and hold three store-sized dicts in memory. This is a tiny pickle interpreter that
knows only the opcodes those files use, creates nothing but placeholders, and hands the
`id_to_label` pairs to a callback as it meets them.
"""

from __future__ import annotations

import pickletools
from collections.abc import Callable
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

    for opcode, arg, _pos in pickletools.genops(fh):
        name = opcode.name
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
        except (ValueError, IndexError, EOFError) as exc:
            if isinstance(exc, UnsupportedPickle):
                raise
            raise UnsupportedPickle(f"{path.name} is damaged: {exc}") from None
