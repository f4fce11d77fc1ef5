"""Plain data types of CIS (msgspec Structs): what the API takes and returns."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Domain = Literal["private", "public"]
SearchMode = Literal["hybrid", "vector", "text"]
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

    `score` is in [0, 1]; `text_score` (BM25 relative to the best text match of the
    query) and `vector_score` (cosine similarity clipped at 0) say why it matched, and
    are None where that signal did not find the memory.
    """

    memory: Memory
    score: float
    text_score: float | None = None
    vector_score: float | None = None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One change to a memory: the state it left behind (`text` is the new text)."""

    memory_id: str
    version: int
    op: HistoryOp
    text: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = {}
    at: int = 0
