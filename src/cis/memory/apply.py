"""The one path by which memories change: local writes and changes from peers alike.

A change is a memory's replicated state (net/merge.py). `Writer.local` stamps a local
transaction with the node's clock and lets the caller build its changes inside it;
`Writer.apply` merges each change into what is stored and writes, in the same
transaction, the row, its words, its vector or embedding job, its history and, for
public memory, the signed ops peers receive.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import apsw
import msgspec
import numpy as np

from ..clock import Clock, now_ms, wall_ms
from ..errors import Conflict
from ..index import stored
from ..index.batch import BatchIndexer
from ..model import Memory
from ..net import oplog
from ..net.identity import Identity
from ..net.merge import State, merge, retraction
from ..store.sqlite import Database, marks, scalar
from . import validate as check
from .freshness import Freshness
from .rows import STATE_COLUMNS, clocks, encode, to_memory, to_state


# gc=False: see cis.net.merge.Register
class Change(msgspec.Struct, kw_only=True, gc=False):
    """A memory's new state; with the vector of its text if the caller supplied one,
    and the version a new row starts at (an import keeps the exported one). `fresh`:
    its id was just made here, so nothing is stored under it yet. `replace`: the stored
    state is set aside, not merged (a private memory a peer's public one overrides;
    its content stays in history). A vector from a peer serves only if the text that
    wins is the one it was made of (`vector_for`)."""

    state: State
    vector: np.ndarray | None = None
    model: str = "supplied"  # the vector's model: a caller's own, or an embedder's id
    vector_for: bytes | None = None  # a peer's vector: the content hash of its text
    version: int = 1
    fresh: bool = False
    replace: bool = False


# gc=False: see cis.net.merge.Register
class Applied(msgspec.Struct, frozen=True, gc=False):
    """A memory before and after a change (before is None for a new one)."""

    before: Memory | None
    after: Memory

    @property
    def changed(self) -> bool:
        return self.before != self.after


def materialize(state: State, version: int) -> Memory:
    """The Memory a state shows."""
    hlc, origin = state.last()
    value = state.value
    return Memory(
        id=state.id,
        text=value("text"),
        key=state.key,
        scope=state.scope,
        domain=value("domain"),
        category=value("category"),
        tags=state.visible_tags(),
        metadata=value("metadata"),
        created_at=state.created_at,
        updated_at=wall_ms(hlc),
        event_at=value("event_at"),
        thread=value("thread"),
        version=version,
        origin=origin,
        hlc=hlc,
    )


def stored_state(conn: apsw.Connection, memory_id: str) -> tuple[Any, ...] | None:
    """The row (STATE_COLUMNS) of the memory with this id, or None."""
    return stored_states(conn, [memory_id]).get(memory_id)


def stored_states(conn: apsw.Connection, ids: builtins.list[str]) -> dict[str, tuple[Any, ...]]:
    """The rows (STATE_COLUMNS) of those of `ids` that are stored, by id."""
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        listed, values = marks(chunk)
        for row in conn.execute(
            f"SELECT {STATE_COLUMNS} FROM memories WHERE id IN ({listed})", values
        ):
            found[row[1]] = row
    return found


_MEMORY_VALUES = (
    "key, scope, created_at, domain, category, text, tags, metadata, updated_at, event_at,"
    " version, deleted, content_hash, clocks, hlc, origin, thread"
)


class _Writes:
    """The statements of one apply, gathered and then run kind by kind (executemany)."""

    def __init__(self) -> None:
        self.inserts: builtins.list[tuple[Any, ...]] = []
        self.updates: builtins.list[tuple[Any, ...]] = []
        self.unwords: builtins.list[tuple[int]] = []
        self.words: builtins.list[tuple[int, str, str]] = []
        self.unvectors: builtins.list[tuple[int]] = []
        self.vectors: builtins.list[tuple[int, str, bytes]] = []
        self.jobs: builtins.list[tuple[int, str, int]] = []
        self.changes: builtins.list[tuple[Any, ...]] = []
        self.queued = 0

    def row(self, rid: int, m: Memory, state: State, *, new: bool) -> None:
        values = (
            m.key,
            m.scope,
            m.created_at,
            m.domain,
            m.category,
            m.text,
            encode(m.tags),
            encode(m.metadata),
            m.updated_at,
            m.event_at,
            m.version,
            int(not state.value("alive")),
            check.content_hash(m.text),
            clocks(state),
            m.hlc,
            m.origin,
            m.thread,
        )
        if new:
            self.inserts.append((rid, m.id, *values))
        else:
            self.updates.append((*values, rid))

    def index(
        self,
        rid: int,
        before: Memory | None,
        after: Memory,
        alive: tuple[bool, bool],
        change: Change,
        owner: str,
    ) -> None:
        """Words, vector and embedding job of a written row."""
        was, now = alive
        words = before is None or (before.text, before.tags) != (after.text, after.tags)
        text = before is None or before.text != after.text
        if was and (not now or words):
            self.unwords.append((rid,))
        if now and (not was or words):
            self.words.append((rid, after.text, " ".join(after.tags)))
        if was and (not now or text):
            self.unvectors.append((rid,))
        if not now or (was and not text):
            return
        vector = change.vector
        if (
            vector is not None
            and change.vector_for is not None
            and change.vector_for != check.content_hash(after.text)
        ):
            vector = None  # a peer's vector of a text that lost
        if vector is not None:
            self.vectors.append((rid, change.model, stored.encode(vector)))
        else:
            self.jobs.append((rid, owner, now_ms()))
            self.queued += 1

    def history(
        self, rid: int, before: Memory | None, after: Memory, alive: tuple[bool, bool]
    ) -> None:
        was, now = alive
        op = "update" if was and now else "delete" if was else "add"
        shown = before if op == "delete" and before is not None else after
        self.changes.append(
            (
                rid,
                after.version,
                op,
                shown.text,
                encode(shown.tags),
                encode(shown.metadata),
                after.updated_at,
                after.hlc,
                after.origin,
            )
        )

    def run(self, conn: apsw.Connection) -> None:
        many = conn.executemany
        try:
            many(
                f"INSERT INTO memories(rid, id, {_MEMORY_VALUES})"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self.inserts,
            )
        except apsw.ConstraintError as exc:
            raise Conflict("a memory's key in its scope is already in use") from exc
        sets = ", ".join(f"{c.strip()}=?" for c in _MEMORY_VALUES.split(","))
        many(f"UPDATE memories SET {sets} WHERE rid=?", self.updates)
        many("DELETE FROM memories_fts WHERE rowid = ?", self.unwords)
        many("INSERT INTO memories_fts(rowid, text, tags) VALUES (?,?,?)", self.words)
        many("DELETE FROM memory_vectors WHERE rid = ?", self.unvectors)
        many("DELETE FROM embed_queue WHERE rid = ?", self.unvectors)
        many("INSERT OR REPLACE INTO memory_vectors VALUES (?, ?, ?)", self.vectors)
        many(
            "INSERT INTO index_log(rid) VALUES (?)",
            [*self.unvectors, *((rid,) for rid, _, _ in self.vectors)],
        )
        many("INSERT OR REPLACE INTO embed_queue VALUES (?,?,?)", self.jobs)
        many(
            "INSERT INTO memory_history(memory_rid, version, op, text, tags, metadata, at,"
            " hlc, origin) VALUES (?,?,?,?,?,?,?,?,?)",
            self.changes,
        )


class Writer:
    def __init__(
        self,
        db: Database,
        fresh: Freshness,
        indexer: BatchIndexer,
        identity: Identity,
        clock: Clock,
    ):
        self.db = db
        self.fresh = fresh
        self.indexer = indexer
        self.identity = identity
        self.clock = clock
        # the stamp (db.stamp) the next local transaction starts with if nothing else
        # commits before it, and this node's chain head (seq, hash) as of then: ops
        # received meanwhile may extend its chain (a node restored from a backup)
        self._head: tuple[tuple[int, int], tuple[int, bytes]] | None = None

    def local(
        self,
        build: Callable[[apsw.Connection, int], Sequence[Change]],
        *,
        backpressure: bool = False,
    ) -> builtins.list[Applied]:
        """One local transaction: `build(conn, hlc)` gives its changes, stamped `hlc`."""
        if backpressure:
            self.indexer.wait_for_room()
        with self.fresh.index.holding():  # the graph grows after, not in turns with it
            return self._commit(build)

    def _commit(
        self, build: Callable[[apsw.Connection, int], Sequence[Change]]
    ) -> builtins.list[Applied]:
        with self.db.write() as conn:
            stamp = self.db.stamp(conn)
            head = self._head[1] if self._head and self._head[0] == stamp else None
            last = int(scalar(conn, "SELECT value FROM meta WHERE name = 'hlc'"))
            hlc = self.clock.next(last)
            changes = build(conn, hlc)
            applied, queued, published = self.apply(conn, changes)
            newest = max([hlc, *(a.after.hlc for a in applied)])
            conn.execute("UPDATE meta SET value = ? WHERE name = 'hlc'", (newest,))
            if published:
                head = oplog.append(
                    conn, self.identity, head or oplog.head(conn, self.identity.did), hlc, published
                )
            generation = self.fresh.bump_generation(conn) if changes else None
        # known after this commit unless anything else commits before the next
        self._head = ((stamp[0] + 1, stamp[1]), head) if head else None
        self.settled(generation, applied, queued)
        return applied

    def apply(
        self, conn: apsw.Connection, changes: Sequence[Change]
    ) -> tuple[builtins.list[Applied], int, builtins.list[State]]:
        """Inside a write transaction: merge and write each change; what changed, how
        many wait for embedding, and the states of public memory peers must learn.
        Changes of one memory are merged first (the merge is associative)."""
        merged: dict[str, Change] = {}
        for change in changes:
            seen = merged.get(change.state.id)
            if seen is not None:
                state = merge(seen.state, change.state)
                if change.vector is None:
                    change = msgspec.structs.replace(
                        change, vector=seen.vector, model=seen.model, vector_for=seen.vector_for
                    )
                change = msgspec.structs.replace(change, state=state, version=seen.version)
            merged[change.state.id] = change
        rows = stored_states(conn, [i for i, c in merged.items() if not c.fresh])
        writes = _Writes()
        applied: builtins.list[Applied] = []
        published: builtins.list[State] = []
        next_rid: int | None = None
        for memory_id, change in merged.items():
            row = rows.get(memory_id)
            if row is None:
                if next_rid is None:  # rowids only grow: a delete leaves a tombstone
                    next_rid = int(scalar(conn, "SELECT coalesce(max(rid), 0) FROM memories"))
                next_rid += 1
                rid, before, state, version = next_rid, None, change.state, change.version
            else:
                rid, before = row[0], to_memory(row)
                current = to_state(row)
                state = change.state if change.replace else merge(current, change.state)
                if state == current:
                    applied.append(Applied(before, before))
                    continue
                version = before.version + 1
            after = materialize(state, version)
            alive = (row is not None and not row[-2], bool(state.value("alive")))
            writes.row(rid, after, state, new=before is None)
            writes.index(rid, before, after, alive, change, self.indexer.owner)
            writes.history(rid, before, after, alive)
            applied.append(Applied(before, after))
            if after.domain == "public":
                published.append(state)
            elif before is not None and before.domain == "public":
                published.append(retraction(state, after.hlc, self.identity.did))
        writes.run(conn)
        return applied, writes.queued, published

    def settled(self, generation: int | None, applied: Sequence[Applied], queued: int) -> None:
        """After the commit: drop what the cache holds of the changed memories, and wake
        the indexer for the new embedding jobs."""
        changed = [a for a in applied if a.changed]
        if generation is not None:
            self.fresh.wrote(
                generation,
                {a.after.scope for a in changed},
                {a.after.id for a in changed},
                {(a.after.scope, a.after.key) for a in changed if a.after.key},
            )
            self.fresh.catch_up()
        if queued:
            self.indexer.notify(queued)
