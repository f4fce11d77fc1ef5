"""The memory service: every memory operation the shells (CLI, HTTP, MCP) expose."""

from __future__ import annotations

import builtins
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import apsw
import msgspec
import numpy as np

from ..cache import ShardedCache
from ..clock import COUNTER_BITS, Clock, now_ms
from ..config import Config
from ..errors import Conflict, InvalidInput, NotFound
from ..index.batch import BatchIndexer
from ..index.embed import Embedder
from ..index.filters import Filters
from ..index.vectors import VectorIndex
from ..metrics import Histogram
from ..model import (
    SEARCH_MODES,
    Filter,
    HistoryEntry,
    Hit,
    Imported,
    Listing,
    Memory,
    Page,
    Search,
)
from ..net import oplog
from ..net.identity import Identity, public_key
from ..net.merge import create, edit
from ..net.oplog import Signed
from ..shapes import shaped
from ..store.snapshot import SnapshotFile
from ..store.sqlite import Database, marks, scalar
from . import cachekeys, quarantine
from . import validate as check
from .apply import Change, Writer, stored_state, stored_states
from .freshness import Freshness
from .quarantine import HeldBatch, SharedVector
from .receive import Gate, Received, receive
from .rows import COLUMNS, STATE_COLUMNS, to_history, to_memory, to_state
from .search import Searcher
from .transfer import Records, export_lines, raise_errors, read_import


# gc=False: see cis.net.merge.Register
class NewMemory(msgspec.Struct, kw_only=True, gc=False):
    """A validated memory about to be written (`stamp` and `origin`, if an import gave
    them, are the clock and writer its fields keep)."""

    id: str
    text: str
    key: str | None
    scope: str
    domain: str
    category: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    event_at: int | None
    thread: str | None
    created_at: int
    stamp: int | None = None
    origin: str | None = None
    version: int = 1
    vector: np.ndarray | None = None
    id_given: bool = False

    def values(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "domain": self.domain,
            "category": self.category,
            "metadata": self.metadata,
            "event_at": self.event_at,
            "thread": self.thread,
        }


_ADD_FIELDS = frozenset(
    [
        "text",
        "key",
        "scope",
        "domain",
        "category",
        "tags",
        "metadata",
        "event_at",
        "thread",
        "embedding",
        "id",
        "created_at",
        "updated_at",
        "version",
        "origin",
        "hlc",
    ]
)
_shared = msgspec.msgpack.Encoder(order="deterministic")
_CHANGEABLE = frozenset(["text", "metadata", "tags", "domain", "category", "event_at", "thread"])


class MemoryService:
    def __init__(
        self,
        db: Database,
        config: Config,
        embedder: Embedder,
        index: VectorIndex,
        cache: ShardedCache[Any],
        indexer: BatchIndexer,
        identity: Identity,
        clock: Clock,
        snapshot: SnapshotFile | None = None,
    ):
        self.db = db
        self.config = config
        self.embedder = embedder
        self.index = index
        self.cache = cache
        self.indexer = indexer
        self.fresh = Freshness(db, index, cache, embedder.model_id, indexer.notify, snapshot)
        self.writer = Writer(db, self.fresh, indexer, identity, clock)
        self.searcher = Searcher(db, embedder, index, cache, self.fresh)
        self.queries = self.searcher.queries
        self.search_seconds = Histogram("cis_search_seconds", "Search latency, by search mode.")

    # ---- writing: every change goes through self.writer (memory/apply.py) --------

    def _prepare(self, fields: dict[str, Any], vector: np.ndarray | None = None) -> NewMemory:
        """The item checked, with `vector` as its checked embedding if given."""
        unknown = set(fields) - _ADD_FIELDS
        if unknown:
            raise InvalidInput(f"unknown memory field(s): {', '.join(sorted(unknown))}")
        if "text" not in fields:
            raise InvalidInput("a memory needs 'text'")
        memory_id = fields.get("id")
        if memory_id is not None and not check.is_uuid(memory_id):
            raise InvalidInput(f"id {memory_id!r} is not a lowercase UUID")
        created = check.when(fields.get("created_at"), "created_at") or now_ms()
        version = fields.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput("version must be a whole number >= 1")
        updated = check.when(fields.get("updated_at"), "updated_at")
        stamp = fields.get("hlc")
        if stamp is not None and (
            isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 <= stamp < 2**63
        ):
            raise InvalidInput("hlc must be a whole number from 0 to 2**63 - 1")
        origin = fields.get("origin")
        if origin is not None:
            public_key(origin)  # InvalidInput if it names no key
        scope = check.scope(fields.get("scope", "global"))
        key = check.key(fields.get("key"))
        embedding = fields.get("embedding")
        return NewMemory(
            id=check.keyed_id(scope, key) if key is not None else memory_id or check.new_id(),
            text=check.text(fields["text"], self.config.max_text_bytes),
            key=key,
            scope=scope,
            domain=check.domain(fields.get("domain", "private")),
            category=check.category(fields.get("category", "context")),
            tags=check.tags(fields.get("tags")),
            metadata=check.metadata(fields.get("metadata")),
            event_at=check.when(fields.get("event_at"), "event_at"),
            thread=check.thread(fields.get("thread")),
            created_at=created,
            stamp=stamp
            if stamp is not None
            else (updated or created) << COUNTER_BITS
            if "updated_at" in fields or "created_at" in fields
            else None,
            origin=origin,
            version=version,
            vector=vector
            if vector is not None or embedding is None
            else self.index.check(embedding),
            id_given=memory_id is not None and key is None,
        )

    def _insert(
        self, items: builtins.list[NewMemory], *, backpressure: bool, skip_existing: bool = False
    ) -> builtins.list[Memory]:
        did = self.writer.identity.did

        def build(conn: apsw.Connection, hlc: int) -> builtins.list[Change]:
            changes, seen = [], set()
            rows = stored_states(conn, [it.id for it in items if it.id_given or it.key])
            for number, it in enumerate(items, 1):
                row = rows.get(it.id)
                live = row is not None and not row[-2]
                if skip_existing and (live or (it.id_given and row) or self._same_text(conn, it)):
                    continue
                where = f"item {number}: " if len(items) > 1 else ""
                if it.id in seen or (row is not None and (live or it.key is None)):
                    raise self._in_use(it, where)
                seen.add(it.id)
                stamp, origin = min(it.stamp or hlc, hlc), it.origin or did
                if row is None:
                    state = create(
                        it.id, it.scope, it.key, it.created_at, stamp, origin, it.values(), it.tags
                    )
                else:  # a key used again after its memory was deleted: the same memory
                    state = edit(to_state(row), hlc, did, it.values(), it.tags)
                fresh = not (it.id_given or it.key)
                changes.append(
                    Change(state=state, vector=it.vector, version=it.version, fresh=fresh)
                )
            return changes

        wait = backpressure and any(i.vector is None for i in items)
        return [a.after for a in self.writer.local(build, backpressure=wait)]

    @staticmethod
    def _same_text(conn: apsw.Connection, item: NewMemory) -> bool:
        """Whether a live memory without a key in the item's scope holds its text."""
        return item.key is None and bool(
            scalar(
                conn,
                "SELECT 1 FROM memories WHERE scope = ? AND deleted = 0 AND key IS NULL"
                " AND content_hash = ? LIMIT 1",
                (item.scope, check.content_hash(item.text)),
            )
        )

    @staticmethod
    def _in_use(item: NewMemory, where: str) -> Conflict:
        if item.key is None:
            return Conflict(f"{where}id {item.id} is already in use")
        return Conflict(
            f"{where}key {item.key!r} in scope {item.scope} is already in use",
            hints={
                "python": "use set() to replace it by key",
                "cli": f"use `cis memory set {item.key} TEXT --scope {item.scope}` to replace it",
                "http": "PATCH /v1/memories/{key} changes it",
                "mcp": "use memory_update to change it",
            },
        )

    def add(
        self,
        text: str,
        *,
        key: str | None = None,
        scope: str = "global",
        domain: str = "private",
        category: str = "context",
        tags: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        event_at: object = None,
        thread: str | None = None,
        embedding: object = None,
    ) -> Memory:
        """Store a memory; durable and findable by words when this returns."""
        item = self._prepare(
            {
                "text": text,
                "key": key,
                "scope": scope,
                "domain": domain,
                "category": category,
                "tags": tags,
                "metadata": metadata,
                "event_at": event_at,
                "thread": thread,
                "embedding": embedding,
            }
        )
        return self._insert([item], backpressure=True)[0]

    def add_many(self, items: Iterable[dict[str, Any]]) -> builtins.list[Memory]:
        """Store many memories in one transaction: all of them, or none on any error."""
        given = list(items)
        for number, fields in enumerate(given, 1):
            if not isinstance(fields, dict):
                raise InvalidInput(f"item {number}: expected an object of memory fields")
        # every vector checked in one go; where that fails, each alone, to name the item
        vectors = self.index.check_all([fields.get("embedding") for fields in given])
        prepared = []
        for number, fields in enumerate(given, 1):
            try:
                vector = None if vectors is None else vectors[number - 1]
                prepared.append(self._prepare(fields, vector))
            except InvalidInput as exc:
                raise InvalidInput(f"item {number}: {exc}") from exc
        return self._insert(prepared, backpressure=False) if prepared else []

    def set(self, key: str, text: str, **fields: Any) -> Memory:
        """Upsert by (scope, key): replace the text and given fields, or add a new memory.
        The key's id is the same on every node, so two writers of one key, here or on two
        devices, end with one memory."""
        unknown = set(fields) - _CHANGEABLE - {"scope", "embedding"}
        if unknown:
            raise InvalidInput(f"cannot set field(s): {', '.join(sorted(unknown))}")
        scope = check.scope(fields.get("scope", "global"))
        memory_id = check.keyed_id(scope, check.key(key) or "")
        with self.db.read() as conn:
            row = stored_state(conn, memory_id)
        if row is None or row[-2]:
            try:
                return self.add(text, key=key, **fields)
            except Conflict:  # another writer added the key in between
                pass
        changes = {k: v for k, v in fields.items() if k != "scope"}
        return self._change(key, scope, text=text, by_id=False, **changes)

    def update(
        self,
        id_or_key: str,
        text: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        scope: str = "global",
    ) -> Memory:
        """Change text, metadata or tags; a new text is re-embedded. NotFound if missing."""
        return self._change(id_or_key, scope, text=text, metadata=metadata, tags=tags)

    def _checked_changes(self, changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - _CHANGEABLE - {"embedding"}
        if unknown:
            raise InvalidInput(f"cannot change field(s): {', '.join(sorted(unknown))}")
        new = {k: v for k, v in changes.items() if v is not None}
        if "text" in new:
            new["text"] = check.text(new["text"], self.config.max_text_bytes)
        for name, fn in (
            ("tags", check.tags),
            ("metadata", check.metadata),
            ("domain", check.domain),
            ("category", check.category),
        ):
            if name in new:
                new[name] = fn(new[name])
        if "event_at" in new:
            new["event_at"] = check.when(new["event_at"], "event_at")
        if "thread" in new:
            new["thread"] = check.thread(new["thread"])
        if "embedding" in new:
            new["embedding"] = self.index.check(new["embedding"])
        return new

    def _change(self, id_or_key: str, scope: str, *, by_id: bool = True, **changes: Any) -> Memory:
        new = self._checked_changes(changes)
        vector = new.pop("embedding", None)
        tags = new.pop("tags", None)
        did = self.writer.identity.did
        found: builtins.list[Memory] = []

        def build(conn: apsw.Connection, hlc: int) -> builtins.list[Change]:
            row = self._find(conn, id_or_key, check.scope(scope), by_id=by_id)
            if row is None:
                raise NotFound(f"no memory {id_or_key!r} in scope {scope}")
            old = to_memory(row)
            found.append(old)
            if (
                msgspec.structs.replace(old, **new, **({} if tags is None else {"tags": tags}))
                == old
            ):
                return []  # nothing changes: no new version
            return [Change(state=edit(to_state(row), hlc, did, new, tags), vector=vector)]

        applied = self.writer.local(build)
        return applied[0].after if applied else found[0]

    def delete(self, id_or_key: str, *, scope: str = "global") -> Memory:
        """Remove a memory (its words and vector too); its history stays. NotFound if missing."""
        did = self.writer.identity.did
        found: builtins.list[Memory] = []

        def build(conn: apsw.Connection, hlc: int) -> builtins.list[Change]:
            row = self._find(conn, id_or_key, check.scope(scope))
            if row is None:
                raise NotFound(f"no memory {id_or_key!r} in scope {scope}")
            found.append(to_memory(row))
            return [Change(state=edit(to_state(row), hlc, did, {"alive": False}))]

        self.writer.local(build)
        return found[0]

    # ---- the cluster: this node's log, and changes from peers -------------------

    def receive(
        self,
        signed: Sequence[Signed],
        denied: Callable[[str], bool] | None = None,
        vectors: Sequence[SharedVector] = (),
        gate: Gate | None = None,
    ) -> Received:
        """Verify a peer's ops and merge them in (see memory/receive.py); the peer's
        vectors of their texts serve when they are of this node's model (or the caller's
        own, 'supplied') and usable, and the others are embedded here."""
        ours = [v for v in vectors if v[2] in (self.embedder.model_id, "supplied")]
        usable: dict[str, tuple[bytes, str, np.ndarray]] = {
            memory_id: (text_hash, model, unit)
            for (memory_id, text_hash, model, _), unit in zip(
                ours, self.index.units([v[3] for v in ours]), strict=True
            )
            if unit is not None  # else this node embeds the text itself
        }
        return receive(self.writer, signed, self.config.max_text_bytes, denied, usable, gate)

    def hold(
        self,
        signed: Sequence[Signed],
        sender: str,
        denied: Callable[[str], bool],
        vectors: Sequence[SharedVector] = (),
        gate: Gate | None = None,
    ) -> Received:
        """Verify the ops of a sender in quarantine and hold them, unapplied."""
        return quarantine.hold(
            self.writer, signed, sender, self.config.max_text_bytes, denied, vectors, gate
        )

    def held(self) -> builtins.list[HeldBatch]:
        """The batches held in quarantine, oldest first."""
        return quarantine.batches(self.db)

    def approve(
        self, ids: Sequence[int] | None, denied: Callable[[str], bool]
    ) -> tuple[builtins.list[HeldBatch], Received]:
        """Apply these held batches (None: all) in chain order, as if just received."""
        done, ops, changed, refused = [], 0, 0, {}
        for batch, signed, vectors in quarantine.pending(self.db, ids):
            received = self.receive(signed, denied, vectors)
            quarantine.release(self.db, batch.id)
            done.append(batch)
            ops, changed = ops + received.ops, changed + received.changed
            refused.update(received.refused)
        return done, Received(ops=ops, changed=changed, refused=refused)

    def reject(self, ids: Sequence[int] | None) -> builtins.list[HeldBatch]:
        """Drop these held batches (None: all) and the later ones of their origins."""
        return quarantine.reject(self.db, ids)

    def vectors_of(self, ids: Iterable[str]) -> builtins.list[SharedVector]:
        """The vectors of these live public memories, with the hash of the text each is
        of, to travel with their ops."""
        wanted = builtins.list(dict.fromkeys(ids))
        out: builtins.list[SharedVector] = []
        with self.db.read() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                listed, values = marks(chunk)
                for row in conn.execute(
                    "SELECT m.id, m.content_hash, v.model, v.vector FROM memories m"
                    " JOIN memory_vectors v ON v.rid = m.rid"
                    f" WHERE m.id IN ({listed}) AND m.domain = 'public' AND m.deleted = 0",
                    values,
                ):
                    out.append((str(row[0]), bytes(row[1]), str(row[2]), bytes(row[3])))
        return out

    def log_vector(self, held_for: str | None = None) -> dict[str, int]:
        """Per origin, the last op held here: what this node has seen of each; for a
        sender in quarantine (`held_for`), its held and rejected ops count as seen."""
        with self.db.read() as conn:
            return oplog.vector(conn) if held_for is None else quarantine.vector(conn, held_for)

    def log_heads(self, vector: dict[str, int]) -> dict[str, bytes]:
        """The hash of each origin's op at its seq in `vector`, where the log holds it."""
        with self.db.read() as conn:
            return oplog.heads(conn, vector)

    def log_forks(self, vector: dict[str, int], heads: dict[str, bytes]) -> builtins.list[str]:
        """The origins a peer (holding `vector`, with `heads`) has another chain of."""
        with self.db.read() as conn:
            return oplog.forks(conn, vector, heads)

    def log_since(
        self, known: dict[str, int], limit: int = 1000, max_bytes: int = 1 << 62
    ) -> builtins.list[Signed]:
        """The ops held here that a peer who holds `known` lacks, up to a signature
        (this node's own are signed first, if they wait for it)."""
        me = self.writer.identity
        with self.db.read() as conn:
            waiting = oplog.unsealed(conn, me)
        if waiting:
            with self.db.write() as conn:
                oplog.seal(conn, me)
        with self.db.read() as conn:
            return oplog.since(conn, known, limit, max_bytes)

    def public_digest(self) -> str:
        """A hash of the live public memory as every replica must show it."""
        digest = hashlib.sha256()
        with self.db.read() as conn:
            for row in conn.execute(
                f"SELECT {COLUMNS} FROM memories WHERE domain = 'public' AND deleted = 0"
                " ORDER BY id"
            ):
                m = to_memory(row)
                digest.update(_shared.encode(msgspec.structs.replace(m, version=0)) + b"\n")
        return digest.hexdigest()

    # ---- reading ---------------------------------------------------------------

    @staticmethod
    def _find(
        conn: apsw.Connection,
        id_or_key: str,
        scope: str,
        *,
        by_id: bool = True,
        deleted: bool = False,
    ) -> tuple[Any, ...] | None:
        """The row (STATE_COLUMNS) of the memory with this id, or with this key in
        `scope` (the live one, else the newest deleted one with `deleted`)."""
        if not isinstance(id_or_key, str) or not id_or_key:
            raise InvalidInput("give a memory id or key")
        live = "" if deleted else " AND deleted = 0"
        if by_id and check.is_uuid(id_or_key):
            rows = conn.execute(
                f"SELECT {STATE_COLUMNS} FROM memories WHERE id = ?{live}", (id_or_key,)
            ).fetchall()
            if rows:
                return rows[0]
        order = " ORDER BY deleted, rid DESC LIMIT 1"
        rows = conn.execute(
            f"SELECT {STATE_COLUMNS} FROM memories WHERE scope = ? AND key = ?{live}{order}",
            (scope, id_or_key),
        ).fetchall()
        return rows[0] if rows else None

    def get(self, id_or_key: str, scope: str = "global") -> Memory | None:
        """The memory with this id, or with this key in `scope`; None if there is none."""
        self.fresh.refresh(vectors=False)
        for cache_key in (cachekeys.by_id(id_or_key), cachekeys.by_key(scope, id_or_key)):
            hit = self.cache.get(cache_key)
            if hit is not None:
                return hit  # type: ignore[no-any-return]
        with self.db.read() as conn:
            row = self._find(conn, id_or_key, check.scope(scope))
        if row is None:
            return None
        memory = to_memory(row)
        self.cache.set(cachekeys.by_id(memory.id), memory)
        if memory.key:
            self.cache.set(cachekeys.by_key(memory.scope, memory.key), memory)
        return memory

    def history(self, id_or_key: str, *, scope: str = "global") -> builtins.list[HistoryEntry]:
        """Every add, update and delete of a memory, oldest first. NotFound if it never existed."""
        with self.db.read() as conn:
            row = self._find(conn, id_or_key, check.scope(scope), deleted=True)
            if row is None:
                raise NotFound(f"no memory {id_or_key!r} in scope {scope}")
            rows = conn.execute(
                "SELECT version, op, text, tags, metadata, at, origin, hlc FROM memory_history"
                " WHERE memory_rid = ? ORDER BY seq",
                (row[0],),
            ).fetchall()
        return [to_history(row[1], r) for r in rows]

    @staticmethod
    def filters(given: Filter, prefix: str | None = None) -> Filters:
        """The compiled, validated form of a filter."""
        return Filters(
            scope=None if given.scope is None else check.scope(given.scope),
            domain=None if given.domain is None else check.domain(given.domain),
            category=None if given.category is None else check.category(given.category),
            tags=check.tags(given.tags),
            since=check.when(given.since, "since"),
            until=check.when(given.until, "until"),
            key_prefix=None if prefix is None else check.plain_text(prefix, "prefix"),
        )

    def list(
        self, *, limit: int = 100, after: str | None = None, **filters: Any
    ) -> builtins.list[Memory]:
        """Memories in the order they were added, `limit` at a time after the id `after`
        (keyword arguments: the fields of Listing; `page` also gives the next cursor)."""
        return self.page(shaped(Listing, limit=limit, cursor=after, **filters)).items

    def page(self, asked: Listing) -> Page:
        """One page of a listing, and the cursor of the next."""
        limit = check.limit(asked.limit)
        flt = self.filters(asked, asked.prefix)
        items = builtins.list(self._select(flt, limit + 1, asked.cursor))
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=items[-1].id if more else None)

    def _select(self, filters: Filters, limit: int | None, after: str | None) -> Iterator[Memory]:
        for row in self._rows(filters, limit, after, supplied=False):
            yield to_memory(row)

    def _rows(
        self, filters: Filters, limit: int | None, after: str | None, *, supplied: bool
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of COLUMNS in storage order; with `supplied`, plus the caller-supplied
        vector (or None) as a last column."""
        where, params = filters.where("m")
        with self.db.read() as conn:
            if after is not None:  # a cursor outside the filter's scope names nothing
                start = conn.execute(
                    "SELECT rid FROM memories WHERE id = ? AND scope = coalesce(?, scope)",
                    (after, filters.scope),
                ).fetchall()
                if not start:
                    raise InvalidInput(f"cursor {after!r} names no memory")
                where += " AND m.rid > ?"
                params.append(start[0][0])
            extra, join = "", ""
            if supplied:
                extra = ", v.vector"
                join = " LEFT JOIN memory_vectors v ON v.rid = m.rid AND v.model = 'supplied'"
            columns = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
            sql = f"SELECT {columns}{extra} FROM memories m{join} WHERE {where} ORDER BY m.rid"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            yield from conn.execute(sql, params)

    def import_file(self, path: str | Path, *, skip_existing: bool = False) -> Imported:
        """Import a .jsonl (or .json list) file in one transaction: every record or none.
        With `skip_existing`, a record already stored (its id; else its key, or its text,
        in its scope) is left out, so importing a file twice adds it once."""
        return self.import_records(read_import(Path(path)), skip_existing=skip_existing)

    def import_records(self, found: Records, *, skip_existing: bool = False) -> Imported:
        """Import parsed records in one transaction; every bad record is named at once."""
        prepared = []
        for number, record in found.records:
            try:
                prepared.append(self._prepare(record))
            except InvalidInput as exc:
                found.errors.append((number, str(exc)))
        raise_errors(found)
        added = self._insert(prepared, backpressure=False, skip_existing=skip_existing)
        return Imported(added=added, skipped=len(prepared) - len(added))

    def export(self, out: IO[bytes], *, limit: int | None = None, **filters: Any) -> int:
        """Write memories as JSON Lines to a binary stream; returns how many. A memory
        whose vector its caller supplied carries it as `embedding` (others are re-embedded
        from their text on import). Keyword arguments: the fields of Filter."""
        count = 0
        for line in self.export_lines(shaped(Filter, **filters), limit=limit):
            out.write(line)
            count += 1
        return count

    def export_lines(self, asked: Filter, *, limit: int | None = None) -> Iterator[bytes]:
        """The export of `export`, one JSON line at a time, from one consistent read."""
        rows = self._rows(self.filters(asked), limit, None, supplied=True)
        return export_lines(((to_memory(r), r[-1]) for r in rows), self.index.dim)

    def scope_of(self, memory_id: str) -> str | None:
        """The scope of the memory with this id, deleted or not; None if there is none."""
        with self.db.read() as conn:
            found = scalar(conn, "SELECT scope FROM memories WHERE id = ?", (memory_id,))
        return None if found is None else str(found)

    def scope_counts(self, scope: str) -> tuple[int, int, int]:
        """Live memories of a scope, those waiting for their vector, those that have one."""
        self.fresh.refresh(vectors=False)
        with self.db.read() as conn:
            row: Any = conn.execute(
                "SELECT count(*), count(q.rid), count(v.rid) FROM memories m"
                " LEFT JOIN embed_queue q ON q.rid = m.rid"
                " LEFT JOIN memory_vectors v ON v.rid = m.rid"
                " WHERE m.scope = ? AND m.deleted = 0",
                (check.scope(scope),),
            ).fetchall()[0]
        return int(row[0]), int(row[1]), int(row[2])

    def count(self) -> int:
        with self.db.read() as conn:
            return int(scalar(conn, "SELECT count(*) FROM memories WHERE deleted = 0"))

    # ---- search ----------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        scope: str | None = None,
        domain: str | None = None,
        category: str | None = None,
        tags: Iterable[str] | None = None,
        since: object = None,
        until: object = None,
        mode: str = "hybrid",
        embedding: object = None,
    ) -> builtins.list[Hit]:
        """Memories that match `query` by words and meaning, best first (see Hit)."""
        asked = Search(
            query=query,
            limit=limit,
            scope=scope,
            domain=domain,
            category=category,
            tags=tags,  # type: ignore[arg-type]  # checked below, as every field
            since=since,  # type: ignore[arg-type]
            until=until,  # type: ignore[arg-type]
            mode=mode,
            embedding=embedding,  # type: ignore[arg-type]
        )
        return self.find(asked)

    def embedder_warm(self) -> None:
        """Start loading the embedding model in the background (no-op once loaded)."""
        self.searcher.warm()

    def expect(self, asked: Search) -> None:
        """Begin embedding the query of a search that waits its turn (nothing for a
        search that needs no embedding, or one that find() will refuse)."""
        if asked.mode not in SEARCH_MODES or asked.mode == "text" or asked.embedding is not None:
            return
        try:
            query = check.text(asked.query, self.config.max_text_bytes, "query")
        except InvalidInput:
            return
        self.searcher.expect(query)

    def find(self, asked: Search) -> builtins.list[Hit]:
        """The hits of a search, best first."""
        query, mode = asked.query, asked.mode
        if mode not in SEARCH_MODES:
            raise InvalidInput(f"unknown mode {mode!r}: use one of {', '.join(SEARCH_MODES)}")
        if not isinstance(query, str) or (not query.strip() and asked.embedding is None):
            raise InvalidInput("query is empty")
        if query.strip():
            check.text(query, self.config.max_text_bytes, "query")
        limit = check.limit(asked.limit)
        flt = self.filters(asked)
        qvec = None if asked.embedding is None else self.index.check(asked.embedding)
        started = time.perf_counter()
        try:
            return self.searcher.run(query, qvec, flt, limit, mode)
        finally:
            self.search_seconds.observe(time.perf_counter() - started, (("mode", mode),))

    # ---- indexing --------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every memory added so far has its vector; False on timeout."""
        done = self.indexer.flush(timeout)
        self.fresh.refresh()
        return done

    def pending(self) -> int:
        """Memories still waiting for their vector (in any process)."""
        with self.db.read() as conn:
            return int(scalar(conn, "SELECT count(*) FROM embed_queue"))

    def reindex(self, *, force: bool = False) -> int:
        """Queue every memory whose vector is missing or from another model (all, if force)."""
        model = self.embedder.model_id
        old = "model != 'supplied'" + ("" if force else " AND model != ?")
        args = () if force else (model,)
        with self.db.write() as conn:
            conn.execute(
                f"INSERT INTO index_log(rid) SELECT rid FROM memory_vectors WHERE {old}", args
            )
            conn.execute(f"DELETE FROM memory_vectors WHERE {old}", args)
            queued = conn.execute(
                "INSERT OR IGNORE INTO embed_queue(rid, claimed_by, claimed_at) "
                "SELECT m.rid, ?, ? FROM memories m WHERE m.deleted = 0 "
                "AND NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.rid = m.rid) RETURNING rid",
                (self.indexer.owner, now_ms()),
            ).fetchall()
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", (model,))
        if queued:
            self.indexer.notify(len(queued))
        return len(queued)
