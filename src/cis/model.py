"""Plain data types of CIS (msgspec Structs): what the API takes and returns."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Domain = Literal["private", "public"]
HistoryOp = Literal["add", "update", "delete"]

DOMAINS: tuple[str, ...] = ("private", "public")
SEARCH_MODES: tuple[str, ...] = ("hybrid", "vector", "text")
CATEGORIES: tuple[str, ...] = (
    "context",
    "fact",
    "preference",
    "decision",
    "task",
    "execution",
    "result",
    "error",
    "skill",
    "note",
)
SCOPE_KINDS: tuple[str, ...] = ("project", "agent", "session")


class Memory(msgspec.Struct, frozen=True, kw_only=True):
    """One stored memory, as the API returns it. Times are epoch milliseconds (UTC)."""

    id: str
    text: str
    key: str | None = None
    scope: str = "global"
    domain: Domain = "private"
    category: str = "context"
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = {}
    created_at: int = 0
    updated_at: int = 0
    event_at: int | None = None
    version: int = 1


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    """One search result.

    `score` is in [0, 1]. Why it matched: `text_score`, how much of the query's words the
    memory holds (BM25 over the query's full score, in [0, 1]); `vector_score`, the cosine
    of query and memory clipped to [0, 1]; `context_score`, the best score of the
    memories stored next to it (same scope, close in time). Each is None where that
    signal did not reach the memory.
    """

    memory: Memory
    score: float
    text_score: float | None = None
    vector_score: float | None = None
    context_score: float | None = None


class Token(msgspec.Struct, frozen=True, kw_only=True):
    """An API token as stored: its secret is never kept, only a hash of it."""

    name: str
    scope: str | None = None
    read_only: bool = False
    created_at: int = 0
    last_used_at: int | None = None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One change to a memory: the state it left behind (`text` is the new text)."""

    memory_id: str
    version: int
    op: HistoryOp
    text: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = {}
    at: int = 0
