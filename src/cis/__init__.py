"""CIS: local-first, encrypted, searchable memory for LLM agents.

The names below load on first use, so `import cis` stays cheap for short CLI calls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    **dict.fromkeys(
        [
            "Busy",
            "CISError",
            "Conflict",
            "EmbeddingError",
            "InvalidInput",
            "KeyMismatch",
            "NotFound",
            "NotInitialized",
            "StorageError",
        ],
        "errors",
    ),
    **dict.fromkeys(["HistoryEntry", "Hit", "Memory"], "model"),
    **dict.fromkeys(["Node", "NodeStatus"], "node"),
}
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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cis' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
