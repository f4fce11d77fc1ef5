"""Plain data types of CIS (msgspec Structs): what the API takes and returns."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Domain = Literal["private", "public"]
HistoryOp = Literal["add", "update", "delete", "lost"]

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


# gc=False: see cis.net.merge.Register
class Memory(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One stored memory, as the API returns it. Times are epoch milliseconds (UTC).

    `origin` is the DID of the node that made its latest change and `hlc` that change's
    clock (hybrid logical: wall milliseconds << 16 plus a counter); `version` counts
    the changes this node applied to it (it is local: replicas count differently).
    `thread` names the memories that explain each other (turns of one conversation,
    steps of one task) where the writer knows it; search reads a thread's words together."""

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
    thread: str | None = None
    version: int = 1
    origin: str = ""
    hlc: int = 0


# gc=False: see cis.net.merge.Register
class Hit(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One search result.

    `score` is in (0, 1] and compares hits of one search. Why it matched: `text_score`,
    how much of the query's words the memory holds (BM25 over the query's full score, in
    [0, 1]); `context_score`, the same with the words of its thread (the memories around
    it in its scope, close in time, as far as they are coherent; BM25F); `vector_score`,
    the cosine of query and memory taken from the centre of the query's neighbourhood
    (cis.index.centred), clipped to [0, 1]; `time_score`, 1 when its time is in
    a month or year the query names. Each is None where that signal did not reach it.
    """

    memory: Memory
    score: float
    text_score: float | None = None
    vector_score: float | None = None
    context_score: float | None = None
    time_score: float | None = None


class Token(msgspec.Struct, frozen=True, kw_only=True):
    """An API token as stored: its secret is never kept, only a hash of it."""

    name: str
    scope: str | None = None
    read_only: bool = False
    created_at: int = 0
    last_used_at: int | None = None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One change to a memory: the state it left behind (`text` is the new text; of a
    delete, the text deleted). `lost` keeps a value that lost a concurrent edit, as its
    writer (`origin`, at clock `hlc`) gave it."""

    memory_id: str
    version: int
    op: HistoryOp
    text: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = {}
    at: int = 0
    origin: str = ""
    hlc: int = 0


Doc = msgspec.Meta  # a field's description (and schema extras) in HTTP and MCP schemas
WHEN = "an ISO-8601 time with its zone, a date (2026-12-01, UTC), a time ago (90m, 7d) or epoch ms"
PAGE = {"minimum": 1, "maximum": 1000}

# fields that several structures share, each described once
ScopeArg = Annotated[
    str | None, Doc(description="global, project/<name>, agent/<name> or session/<id>")
]
DomainArg = Annotated[str | None, Doc(description="private (this device) or public (synced)")]
CategoryArg = Annotated[str | None, Doc(description=f"one of: {', '.join(CATEGORIES)}")]
TagsArg = Annotated[tuple[str, ...], Doc(description="tags; a memory must have every one")]
SinceArg = Annotated[int | str | None, Doc(description=f"from this time on: {WHEN}")]
UntilArg = Annotated[int | str | None, Doc(description=f"before this time: {WHEN}")]
VectorArg = Annotated[list[float] | None, Doc(description="your own vector (384 numbers)")]


class Filter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which memories a listing, search or export covers; each field given narrows it.

    Every shell builds this one structure (Python, CLI, HTTP, MCP). `since` is
    inclusive, `until` exclusive, on `event_at` or else `created_at`.
    """

    scope: ScopeArg = None
    domain: DomainArg = None
    category: CategoryArg = None
    tags: TagsArg = ()
    since: SinceArg = None
    until: UntilArg = None


class Search(Filter, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A search: the query, how many hits, which signals (`mode`), and its filter."""

    query: Annotated[str, Doc(description="what you want to know, in plain words")]
    limit: Annotated[int, Doc(description="how many hits", extra_json_schema=PAGE)] = 10
    mode: Annotated[str, Doc(description="hybrid (words and meaning), vector or text")] = "hybrid"
    embedding: VectorArg = None


class Listing(Filter, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A page of memories in the order they were added: `limit` after `cursor` (the
    `next_cursor` of the page before); `prefix` keeps keys that start with it."""

    limit: Annotated[int, Doc(description="page size", extra_json_schema=PAGE)] = 100
    cursor: Annotated[str | None, Doc(description="next_cursor of the page before")] = None
    prefix: Annotated[str | None, Doc(description="only keys that start with this")] = None


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a listing and the cursor of the next (None on the last page)."""

    items: list[Memory]
    next_cursor: str | None = None


class Imported(msgspec.Struct, frozen=True, kw_only=True):
    """What an import did: the memories it added, and how many records it left out
    because they were stored already (asked for with `skip_existing`)."""

    added: list[Memory]
    skipped: int = 0


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Who this node is to its peers: its DID (did:key of its Ed25519 key)."""

    did: str


class ScopeStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a token limited to one scope sees of the node: that scope alone."""

    scope: str
    model: str
    memories: int
    pending_embeddings: int
    vectors: int
