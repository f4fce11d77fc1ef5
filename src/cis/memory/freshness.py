"""Keeps a process's in-memory vector index and caches in step with the database.

Every write of memories bumps `meta.generation`; every vector written or removed appends
to `index_log`. Before it answers, a process checks PRAGMA data_version (cheap); when
another connection committed, it applies the new log rows to its index and drops the
cache entries that may be stale, so a memory written by any process is found by all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import apsw
import numpy as np

from ..cache import ShardedCache
from ..index import stored
from ..index.embed import normalize
from ..index.vectors import VectorIndex
from ..store.snapshot import SnapshotFile
from ..store.sqlite import Database, scalar
from ..yielding import hand_over
from . import cachekeys

log = logging.getLogger("cis.index")

# log entries a snapshot may be behind and still be used: it is saved only once every
# vector is in the graph, and a merge waits for MERGE_MIN vectors or QUIET_S of quiet, so
# a node closes up to about SNAPSHOT_EVERY + MERGE_MIN entries past its last one
SNAPSHOT_MAX_LAG = 20_000
SNAPSHOT_EVERY = 5000  # log entries applied before a long-running process saves anew
LOAD_CHUNK = 4096  # vectors read from the rows per upsert


class Freshness:
    def __init__(
        self,
        db: Database,
        index: VectorIndex,
        cache: ShardedCache[Any],
        model: str,
        on_foreign: Callable[[], None],
        snapshot: SnapshotFile | None = None,
    ):
        self.db = db
        self._on_foreign = on_foreign
        self._snapshot = snapshot
        self._since_snapshot = 0
        self._saved = False  # whether the snapshot file holds a graph this process can use
        index.on_built = self._built
        self.index = index
        self.cache = cache
        self.model = model
        self._lock = threading.Lock()
        self._data_version = -1
        self._cache_version = -1
        self._generation = -1
        self._log_seq = 0
        self.results_epoch = 0
        self._scope_epochs: dict[str | None, int] = {}
        self.loaded = False

    @property
    def logged(self) -> int:
        """The last row of the vector log the index has taken in."""
        return self._log_seq

    def scope_token(self, scope: str | None) -> tuple[int, int]:
        """Part of a cached result's key: changes when a write may alter that result."""
        return self.results_epoch, self._scope_epochs.get(scope, 0)

    def bump_generation(self, conn: apsw.Connection) -> int:
        """Inside a write transaction: the new generation number."""
        return int(
            scalar(
                conn, "UPDATE meta SET value = value + 1 WHERE name = 'generation' RETURNING value"
            )
        )

    def wrote(
        self,
        generation: int,
        scopes: Iterable[str],
        ids: Iterable[str],
        keys: Iterable[tuple[str, str]],
    ) -> None:
        """After a local commit: drop exactly the cache entries it made stale."""
        with self._lock:
            foreign = generation != self._generation + 1
            self._generation = generation
            for scope in {*scopes, None}:
                self._scope_epochs[scope] = self._scope_epochs.get(scope, 0) + 1
        if foreign:
            self._invalidate_all()
        for memory_id in ids:
            self.cache.pop(cachekeys.by_id(memory_id))
        for scope_key in keys:
            self.cache.pop(cachekeys.by_key(*scope_key))

    def _invalidate_all(self) -> None:
        self.results_epoch += 1
        self.cache.clear()

    def refresh(self, *, vectors: bool = True) -> None:
        """Catch up with commits of other connections (processes, the indexer).

        With `vectors` False only the caches are checked, and the index is not loaded.
        """
        version = self.db.data_version()
        if version == (self._data_version if vectors else self._cache_version) and (
            self.loaded or not vectors
        ):
            return
        with self._lock:
            with self.db.read() as conn:
                row: tuple[Any, ...] = conn.execute(
                    "SELECT (SELECT value FROM meta WHERE name = 'generation'),"
                    " (SELECT coalesce(max(seq), 0) FROM index_log)"
                ).fetchall()[0]
                generation, seq = row
                if vectors:
                    if not self.loaded:
                        self._load(conn, int(seq))
                        self.loaded = True
                    elif int(seq) != self._log_seq:
                        self._apply_log(conn)
                        self.results_epoch += 1
                    self._data_version = version
            self._cache_version = version
            if int(generation) != self._generation:
                self._generation = int(generation)
                self._invalidate_all()
                self._on_foreign()  # another process wrote: it may have left rows to embed

    def catch_up(self) -> None:
        """After a local write in a long-running process: take its vectors into the index
        now, not at the next search, so the graph grows while an import goes on."""
        if self.loaded and self.index.can_build:
            self.refresh()

    def _load(self, conn: apsw.Connection, seq: int) -> None:
        """Fill the index: from a recent snapshot plus the log after it, else from rows."""
        saved = self._snapshot.load() if self._snapshot is not None else None
        if saved is not None and 0 <= seq - saved[0] <= SNAPSHOT_MAX_LAG:
            try:
                self.index.restore(saved[1])
            except ValueError:
                pass
            else:
                self._log_seq = saved[0]
                self._saved = True
                self._apply_log(conn)
                return
        self._load_all(conn)
        self._log_seq = seq
        self._since_snapshot = seq

    def _built(self) -> None:
        """Every vector is in the graph: save it if the snapshot is missing or behind."""
        if self.index.can_build and (not self._saved or self._since_snapshot >= SNAPSHOT_EVERY):
            self.persist()

    def persist(self) -> bool:
        """Save the vector graph (if there is one) with the log position it reflects."""
        if self._snapshot is None:
            return False
        with self._lock:
            blob = self.index.snapshot()
            if blob is None:
                return False
            position, behind = self._log_seq, self._since_snapshot
            self._since_snapshot = 0
        try:
            self._snapshot.save(position, blob)
        except OSError as exc:  # a full disk: the next opener loads from the rows
            log.warning("vector index snapshot not saved: %s", exc)
            self._since_snapshot += behind
            return False
        self._saved = True
        return True

    def persist_if_stale(self) -> None:
        """At close: stop the mover (a save under way finishes), then save if changes
        came since the last snapshot and every vector is in the graph."""
        self.index.close()
        if self._since_snapshot and self.index.can_build and self.index.uses_ann:
            self.persist()

    def _load_all(self, conn: apsw.Connection) -> None:
        with self.index.holding():  # the mover starts once every row is in
            self._load_rows(conn)

    def _load_rows(self, conn: apsw.Connection) -> None:
        self.index.clear()
        rids: list[int] = []
        blobs: list[bytes] = []
        for rid, blob in conn.execute(
            "SELECT v.rid, v.vector FROM memory_vectors v JOIN memories m ON m.rid = v.rid "
            "WHERE m.deleted = 0 AND v.model IN (?, 'supplied')",
            (self.model,),
        ):
            rids.append(rid)
            blobs.append(blob)
            if len(rids) == LOAD_CHUNK:  # no copy so large that it holds other threads
                self._upsert(rids, blobs)
                rids, blobs = [], []
                hand_over()  # reading row by row would keep them waiting too
        self._upsert(rids, blobs)

    def _apply_log(self, conn: apsw.Connection) -> None:
        rows: list[Any] = conn.execute(
            "SELECT l.seq, l.rid, v.vector, v.model, m.deleted FROM index_log l "
            "LEFT JOIN memory_vectors v ON v.rid = l.rid LEFT JOIN memories m ON m.rid = l.rid "
            "WHERE l.seq > ? ORDER BY l.seq",
            (self._log_seq,),
        ).fetchall()
        latest: dict[int, bytes | None] = {}
        for seq, rid, blob, model, deleted in rows:
            usable = blob is not None and not deleted and model in (self.model, "supplied")
            latest[rid] = blob if usable else None
            self._log_seq = max(self._log_seq, seq)
        self._since_snapshot += len(rows)
        self.index.remove([rid for rid, blob in latest.items() if blob is None])
        live = [(rid, blob) for rid, blob in latest.items() if blob is not None]
        self._upsert([r for r, _ in live], [b for _, b in live])

    def _upsert(self, rids: list[int], blobs: list[bytes]) -> None:
        keep, matrix = stored.decode(blobs, self.index.dim)
        if not keep:
            return
        ids = np.asarray([rids[i] for i in keep], dtype=np.int64)
        self.index.upsert(ids, normalize(matrix))  # unit again after the rounding
