"""Storage backends for a ReasoningBank server: Chroma, Supabase, or both during a switch."""

from rbmigrate.storage.base import (
    MemoryItem,
    RetrievalError,
    StorageBackendInterface,
    StorageEmbeddingError,
    StorageError,
)
from rbmigrate.storage.factory import create_storage_backend

__all__ = [
    "MemoryItem",
    "RetrievalError",
    "StorageBackendInterface",
    "StorageEmbeddingError",
    "StorageError",
    "create_storage_backend",
]
