"""CIS: local-first, encrypted, searchable memory for LLM agents."""

from .errors import (
    Busy,
    CISError,
    Conflict,
    EmbeddingError,
    InvalidInput,
    KeyMismatch,
    NotFound,
    NotInitialized,
    StorageError,
)
from .model import HistoryEntry, Hit, Memory
from .node import Node, NodeStatus

__all__ = [
    "Busy",
    "CISError",
    "Conflict",
    "EmbeddingError",
    "HistoryEntry",
    "Hit",
    "InvalidInput",
    "KeyMismatch",
    "Memory",
    "Node",
    "NodeStatus",
    "NotFound",
    "NotInitialized",
    "StorageError",
]
__version__ = "0.1.0"
