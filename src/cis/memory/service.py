"""The memory service: every memory operation the shells (CLI, HTTP, MCP) expose."""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import apsw
import msgspec
import numpy as np

from ..cache import ShardedCache
from ..config import Config
from ..errors import Conflict, InvalidInput, NotFound
from ..index.batch import BatchIndexer
from ..index.embed import Embedder
from ..index.filters import Filters
from ..index.hybrid import WORD_WEIGHT
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
from ..shapes import shaped
from ..store.snapshot import SnapshotFile
from ..store.sqlite import Database, scalar
from . import cachekeys
from . import validate as check
from .freshness import Freshness
from .rows import COLUMNS, encode, to_history, to_memory
from .search import Searcher
from .transfer import Records, export_lines, raise_errors, read_import

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class NewMemory(msgspec.Struct, kw_only=True):
    """A validated memory about to be written."""

    id: str
    text: str
    key: str | None
    scope: str
    domain: str
    category: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    event_at: int | None
    created_at: int
    updated_at: int
    version: int = 1
    vector: np.ndarray | None = None
    id_given: bool = False


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
        "embedding",
        "id",
        "created_at",
        "updated_at",
        "version",
    ]
)


class MemoryService:
    def __init__(
        self,
        db: Database,
        config: Config,
        embedder: Embedder,
        index: VectorIndex,
        cache: ShardedCache[Any],
        indexer: BatchIndexer,
        snapshot: SnapshotFile | None = None,
        text_weight: float = WORD_WEIGHT,
    ):
        self.db = db
        self.config = config
        self.embedder = embedder
        self.index = index
        self.cache = cache
        self.indexer = indexer
        self.fresh = Freshness(db, index, cache, embedder.model_id, indexer.notify, snapshot)
        self.searcher = Searcher(db, embedder, index, cache, self.fresh, text_weight)
        self.queries = self.searcher.queries
        self.search_seconds = Histogram("cis_search_seconds", "Search latency, by search mode.")

    # ---- writing ---------------------------------------------------------------

    def _prepare(self, fields: dict[str, Any]) -> NewMemory:
        unknown = set(fields) - _ADD_FIELDS
        if unknown:
            raise InvalidInput(f"unknown memory field(s): {', '.join(sorted(unknown))}")
        if "text" not in fields:
            raise InvalidInput("a memory needs 'text'")
        now = check.now_ms()
        memory_id = fields.get("id")
        if memory_id is not None and not (
            isinstance(memory_id, str) and _UUID.fullmatch(memory_id)
        ):
            raise InvalidInput(f"id {memory_id!r} is not a lowercase UUID")
        created = check.when(fields.get("created_at"), "created_at") or now
        version = fields.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput("version must be a whole number >= 1")
        embedding = fields.get("embedding")
        return NewMemory(
            id=memory_id or check.new_id(),
            text=check.text(fields["text"], self.config.max_text_bytes),
            key=check.key(fields.get("key")),
            scope=check.scope(fields.get("scope", "global")),
            domain=check.domain(fields.get("domain", "private")),
            category=check.category(fields.get("category", "context")),
            tags=check.tags(fields.get("tags")),
            metadata=check.metadata(fields.get("metadata")),
            event_at=check.when(fields.get("event_at"), "event_at"),
            created_at=created,
            updated_at=check.when(fields.get("updated_at"), "updated_at") or created,
            version=version,
            vector=None if embedding is None else self.index.check(embedding),
            id_given=memory_id is not None,
        )

    def _insert(
        self, items: builtins.list[NewMemory], *, backpressure: bool, skip_existing: bool = False
    ) -> builtins.list[Memory]:
        if backpressure and any(i.vector is None for i in items):
            self.indexer.wait_for_room()
        owner, now = self.indexer.owner, check.now_ms()
        with self.db.write() as conn:
            if skip_existing:
                items = [it for it in items if not self._stored(conn, it)]
            if not items:
                return []
            encoded = [(encode(it.tags), encode(it.metadata)) for it in items]
            # rowids are handed out here, under the write lock; memories are never removed
            # (a delete leaves a tombstone), so max(rid) only grows
            first = int(scalar(conn, "SELECT coalesce(max(rid), 0) FROM memories")) + 1
            rids = range(first, first + len(items))
            try:
                conn.executemany(
                    "INSERT INTO memories(rid, id, key, scope, domain, category, text, tags,"
                    " metadata, created_at, updated_at, event_at, version, content_hash)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            rid,
                            it.id,
                            it.key,
                            it.scope,
                            it.domain,
                            it.category,
                            it.text,
                            tags,
                            meta,
                            it.created_at,
                            it.updated_at,
                            it.event_at,
                            it.version,
                            check.content_hash(it.text),
                        )
                        for rid, it, (tags, meta) in zip(rids, items, encoded, strict=True)
                    ],
                )
            except apsw.ConstraintError as exc:
                raise self._conflict(conn, items) from exc
            conn.executemany(
                "INSERT INTO memories_fts(rowid, text, tags) VALUES (?,?,?)",
                [(rid, it.text, " ".join(it.tags)) for rid, it in zip(rids, items, strict=True)],
            )
            conn.executemany(
                "INSERT INTO memory_history VALUES (?,?,'add',?,?,?,?)",
                [
                    (rid, it.version, it.text, tags, meta, it.updated_at)
                    for rid, it, (tags, meta) in zip(rids, items, encoded, strict=True)
                ],
            )
            supplied = [
                (rid, it) for rid, it in zip(rids, items, strict=True) if it.vector is not None
            ]
            conn.executemany(
                "INSERT INTO memory_vectors VALUES (?, 'supplied', ?)",
                [(rid, it.vector.tobytes()) for rid, it in supplied],  # type: ignore[union-attr]
            )
            conn.executemany("INSERT INTO index_log(rid) VALUES (?)", [(r,) for r, _ in supplied])
            waiting = [
                (rid, owner, now) for rid, it in zip(rids, items, strict=True) if it.vector is None
            ]
            conn.executemany("INSERT INTO embed_queue VALUES (?,?,?)", waiting)
            queued = len(waiting)
            generation = self.fresh.bump_generation(conn)
        self.fresh.wrote(generation, {i.scope for i in items}, (), ())
        if queued:
            self.indexer.notify(queued)
        return [
            Memory(
                id=i.id,
                text=i.text,
                key=i.key,
                scope=i.scope,
                domain=i.domain,  # type: ignore[arg-type]
                category=i.category,
                tags=i.tags,
                metadata=i.metadata,
                created_at=i.created_at,
                updated_at=i.updated_at,
                event_at=i.event_at,
                version=i.version,
            )
            for i in items
        ]

    @staticmethod
    def _stored(conn: apsw.Connection, item: NewMemory) -> bool:
        """Whether the memory is stored already: its id if it came with one, else its key
        (live, in its scope), else its text (live, in its scope)."""
        if item.id_given:
            return bool(scalar(conn, "SELECT 1 FROM memories WHERE id = ?", (item.id,)))
        args: tuple[object, ...]
        if item.key is not None:
            sql, args = "key = ?", (item.key,)
        else:
            sql, args = "content_hash = ? AND key IS NULL", (check.content_hash(item.text),)
        return bool(
            scalar(
                conn,
                f"SELECT 1 FROM memories WHERE scope = ? AND deleted = 0 AND {sql} LIMIT 1",
                (item.scope, *args),
            )
        )

    @staticmethod
    def _conflict(conn: apsw.Connection, items: builtins.list[NewMemory]) -> Conflict:
        """Which item clashed (an id or a live key in use, or repeated in the batch)."""
        ids: set[str] = set()
        keys: set[tuple[str, str]] = set()
        for number, it in enumerate(items, 1):
            where = f"item {number}: " if len(items) > 1 else ""
            if it.id in ids or scalar(conn, "SELECT 1 FROM memories WHERE id = ?", (it.id,)):
                return Conflict(f"{where}id {it.id} is already in use")
            ids.add(it.id)
            if it.key is None:
                continue
            taken = scalar(
                conn,
                "SELECT 1 FROM memories WHERE scope = ? AND key = ? AND deleted = 0",
                (it.scope, it.key),
            )
            if (it.scope, it.key) in keys or taken:
                return Conflict(
                    f"{where}key {it.key!r} in scope {it.scope} is already in use",
                    hints={
                        "python": "use set() to replace it by key",
                        "cli": f"use `cis memory set {it.key} TEXT --scope {it.scope}` to"
                        " replace it",
                        "http": "PATCH /v1/memories/{key} changes it",
                        "mcp": "use memory_update to change it",
                    },
                )
            keys.add((it.scope, it.key))
        return Conflict("a memory clashes with one already stored")

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
                "embedding": embedding,
            }
        )
        return self._insert([item], backpressure=True)[0]

    def add_many(self, items: Iterable[dict[str, Any]]) -> builtins.list[Memory]:
        """Store many memories in one transaction: all of them, or none on any error."""
        prepared = []
        for number, fields in enumerate(items, 1):
            if not isinstance(fields, dict):
                raise InvalidInput(f"item {number}: expected an object of memory fields")
            try:
                prepared.append(self._prepare(fields))
            except InvalidInput as exc:
                raise InvalidInput(f"item {number}: {exc}") from exc
        return self._insert(prepared, backpressure=False) if prepared else []

    def set(self, key: str, text: str, **fields: Any) -> Memory:
        """Upsert by (scope, key): replace the text and given fields, or add a new memory."""
        scope = check.scope(fields.get("scope", "global"))
        check.key(key)
        with self.db.read() as conn:
            row = self._find(conn, key, scope, by_id=False)
        if row is None:
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

    def _change(self, id_or_key: str, scope: str, *, by_id: bool = True, **changes: Any) -> Memory:
        unknown = set(changes) - {"text", "metadata", "tags", "domain", "category", "event_at"}
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
        with self.db.write() as conn:
            row = self._find(conn, id_or_key, check.scope(scope), by_id=by_id)
            if row is None:
                raise NotFound(f"no memory {id_or_key!r} in scope {scope}")
            old = to_memory(row)
            merged = msgspec.structs.replace(old, **new)
            if merged == old:
                return old
            now = check.now_ms()
            merged = msgspec.structs.replace(
                merged, updated_at=max(now, old.updated_at), version=old.version + 1
            )
            rid = row[0]
            tags_json, meta_json = encode(merged.tags), encode(merged.metadata)
            conn.execute(
                "UPDATE memories SET text=?, tags=?, metadata=?, domain=?, category=?, event_at=?,"
                " updated_at=?, version=?, content_hash=? WHERE rid=?",
                (
                    merged.text,
                    tags_json,
                    meta_json,
                    merged.domain,
                    merged.category,
                    merged.event_at,
                    merged.updated_at,
                    merged.version,
                    check.content_hash(merged.text),
                    rid,
                ),
            )
            if merged.text != old.text or merged.tags != old.tags:
                conn.execute("DELETE FROM memories_fts WHERE rowid = ?", (rid,))
                conn.execute(
                    "INSERT INTO memories_fts(rowid, text, tags) VALUES (?,?,?)",
                    (rid, merged.text, " ".join(merged.tags)),
                )
            conn.execute(
                "INSERT INTO memory_history VALUES (?,?,?,?,?,?,?)",
                (
                    rid,
                    merged.version,
                    "update",
                    merged.text,
                    tags_json,
                    meta_json,
                    merged.updated_at,
                ),
            )
            requeue = merged.text != old.text
            if requeue:
                conn.execute("DELETE FROM memory_vectors WHERE rid = ?", (rid,))
                conn.execute("INSERT INTO index_log(rid) VALUES (?)", (rid,))
                conn.execute(
                    "INSERT OR REPLACE INTO embed_queue VALUES (?,?,?)",
                    (rid, self.indexer.owner, now),
                )
            generation = self.fresh.bump_generation(conn)
        self.fresh.wrote(generation, {old.scope}, {old.id}, self._keys(old))
        if requeue:
            self.indexer.notify(1)
        return merged

    def delete(self, id_or_key: str, *, scope: str = "global") -> Memory:
        """Remove a memory (its words and vector too); its history stays. NotFound if missing."""
        with self.db.write() as conn:
            row = self._find(conn, id_or_key, check.scope(scope))
            if row is None:
                raise NotFound(f"no memory {id_or_key!r} in scope {scope}")
            old, rid, now = to_memory(row), row[0], check.now_ms()
            conn.execute(
                "UPDATE memories SET deleted = 1, version = version + 1, updated_at = ?"
                " WHERE rid = ?",
                (max(now, old.updated_at), rid),
            )
            conn.execute("DELETE FROM memories_fts WHERE rowid = ?", (rid,))
            conn.execute("DELETE FROM memory_vectors WHERE rid = ?", (rid,))
            conn.execute("DELETE FROM embed_queue WHERE rid = ?", (rid,))
            conn.execute("INSERT INTO index_log(rid) VALUES (?)", (rid,))
            conn.execute(
                "INSERT INTO memory_history VALUES (?,?,?,?,?,?,?)",
                (
                    rid,
                    old.version + 1,
                    "delete",
                    old.text,
                    encode(old.tags),
                    encode(old.metadata),
                    max(now, old.updated_at),
                ),
            )
            generation = self.fresh.bump_generation(conn)
        self.fresh.wrote(generation, {old.scope}, {old.id}, self._keys(old))
        return old

    @staticmethod
    def _keys(memory: Memory) -> builtins.list[tuple[str, str]]:
        return [(memory.scope, memory.key)] if memory.key else []

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
        if not isinstance(id_or_key, str) or not id_or_key:
            raise InvalidInput("give a memory id or key")
        live = "" if deleted else " AND deleted = 0"
        if by_id and _UUID.fullmatch(id_or_key):
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM memories WHERE id = ?{live}", (id_or_key,)
            ).fetchall()
            if rows:
                return rows[0]
        order = " ORDER BY deleted, rid DESC LIMIT 1"
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM memories WHERE scope = ? AND key = ?{live}{order}",
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
                "SELECT version, op, text, tags, metadata, at FROM memory_history"
                " WHERE memory_rid = ? ORDER BY version",
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
        return export_lines((to_memory(r), r[-1]) for r in rows)

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
                (self.indexer.owner, check.now_ms()),
            ).fetchall()
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", (model,))
        if queued:
            self.indexer.notify(len(queued))
        return len(queued)
