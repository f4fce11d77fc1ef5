"""The batch indexer: embeds queued memories off the caller's thread, in bounded batches.

The backlog is the durable `embed_queue` table, so memory stays bounded however much is
queued, a crash loses nothing, and rows left by a process that exited or died are
adopted by the next one. Identical text is embedded once: a batch reuses the vector of
any memory with the same content hash, and embeds each distinct text once.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ..clock import now_ms
from ..errors import CISError
from ..store.sqlite import Database, marks, scalar
from . import stored
from .embed import Embedder

STALE_CLAIM_MS = 120_000


def _alive(owner: str) -> bool:
    """Whether the process named in a claim token ("<pid>-<random>") still runs here."""
    try:
        os.kill(int(owner.split("-", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True  # not ours to judge: left to the stale-claim timeout
    return True


class BatchIndexer:
    """Background embedding with backpressure: `wait_for_room` blocks producers that outrun it."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        batch_size: int = 32,
        max_items: int = 4096,
        max_bytes: int = 16 * 1024 * 1024,
        background: bool = True,
    ):
        self.db = db
        self.embedder = embedder
        self.owner = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._batch_size = batch_size
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        self._submitted = 0  # work tickets handed in
        self._done = 0  # tickets known to be finished
        self._backlog = 0  # rows this process queued and has not embedded yet
        self._holds = False  # whether this process may hold claims on queued rows
        self._stop = False
        self._poll = False
        self.background = background
        self._thread: threading.Thread | None = None
        self.error: CISError | None = None
        self.embedded = 0
        self.reused = 0

    @property
    def backlog(self) -> int:
        return self._backlog

    def notify(self, queued: int = 0, *, start: bool = False) -> None:
        """Tell the worker there is work (`queued` new rows from this process).

        Without `background`, the worker only starts when asked (`start`, or flush()).
        """
        with self._cond:
            self._submitted += 1
            self._backlog += queued
            self._holds = self._holds or queued > 0
            if self._thread is None and (self.background or start):
                self._thread = threading.Thread(target=self._run, name="cis-indexer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_for_room(self) -> None:
        """Backpressure: block while this process's backlog is at its cap (starting the
        worker if it is not running, so that the wait ends)."""
        if self._backlog < self._max_items:
            return
        self.notify(start=True)
        with self._cond:
            while self._backlog >= self._max_items and not self._stop and self.error is None:
                self._cond.wait(0.5)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the work handed in so far (and any left by others) is embedded.

        Returns False on timeout."""
        self.notify(start=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            while self._done < target:
                if self.error is not None:
                    raise self.error
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        if self.error is not None:
            raise self.error
        return True

    def close(self, *, release: bool = True) -> None:
        """Stop the worker; unclaim this process's rows so the next opener takes them."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        if release and self._holds:  # a process that queued nothing writes nothing
            with self.db.write() as conn:
                conn.execute(
                    "UPDATE embed_queue SET claimed_by = NULL WHERE claimed_by = ?", (self.owner,)
                )

    def release_dead_claims(self) -> int:
        """Unclaim rows held by processes of this machine that no longer run."""
        with self.db.read() as conn:
            owners = [
                str(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT claimed_by FROM embed_queue WHERE claimed_by IS NOT NULL"
                )
            ]
        dead = [o for o in owners if o != self.owner and not _alive(o)]
        if not dead:
            return 0
        listed, values = marks(dead)
        with self.db.write() as conn:
            conn.execute(
                f"UPDATE embed_queue SET claimed_by = NULL WHERE claimed_by IN ({listed})", values
            )
            return conn.changes()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                target = self._submitted
                poll, self._poll = self._poll, False
            try:
                if poll:
                    self.release_dead_claims()
                while not self._stop and self._step():
                    pass
            except CISError as exc:
                with self._cond:
                    self.error = exc
                    self._done = target
                    self._cond.notify_all()
                return
            with self._cond:
                self._done = max(self._done, target)
                self._cond.notify_all()
                if self._submitted == target and not self._stop:
                    self._cond.wait(5.0)
                    if self._submitted == target:  # idle poll: adopt rows of dead processes
                        self._submitted += 1
                        self._poll = True

    def _claim(self) -> list[tuple[int, str, bytes]]:
        stale = now_ms() - STALE_CLAIM_MS
        with self.db.write() as conn:
            rows = conn.execute(
                "UPDATE embed_queue SET claimed_by = ?, claimed_at = ? WHERE rid IN ("
                " SELECT rid FROM embed_queue WHERE claimed_by IS NULL OR claimed_by = ?"
                " OR claimed_at < ? ORDER BY rid LIMIT ?) RETURNING rid",
                (self.owner, now_ms(), self.owner, stale, self._batch_size),
            ).fetchall()
            if not rows:
                return []
            self._holds = True
            listed, values = marks([r[0] for r in rows])
            items: list[Any] = conn.execute(
                f"SELECT rid, text, content_hash, deleted FROM memories WHERE rid IN ({listed})",
                values,
            ).fetchall()
            gone = [r[0] for r in items if r[3]]
            known = {r[0] for r in items}
            gone += [r[0] for r in rows if r[0] not in known]
            if gone:
                listed, values = marks(gone)
                conn.execute(f"DELETE FROM embed_queue WHERE rid IN ({listed})", values)
        out: list[tuple[int, str, bytes]] = []
        size = 0
        for rid, text, chash, deleted in items:
            if not deleted and (size < self._max_bytes or not out):
                out.append((int(rid), str(text), bytes(chash)))
                size += len(text)
        return out

    def _step(self) -> bool:
        """Embed one batch; False when nothing was claimable."""
        items = self._claim()
        if not items:
            return False
        model = self.embedder.model_id
        hashes = list({h for _, _, h in items})
        with self.db.read() as conn:
            listed, values = marks(hashes)
            known = {
                bytes(h): bytes(v)
                for h, v in conn.execute(
                    "SELECT m.content_hash, v.vector FROM memories m "
                    "JOIN memory_vectors v ON v.rid = m.rid "
                    f"WHERE m.content_hash IN ({listed}) AND v.model = ?",
                    [*values, model],
                )
            }
        to_embed = {h: t for _, t, h in items if h not in known}
        self.reused += len(items) - len(to_embed)
        if to_embed:
            vectors = self.embedder.embed(list(to_embed.values()))
            for chash, vector in zip(to_embed, vectors, strict=True):
                known[chash] = stored.encode(vector)
            self.embedded += len(to_embed)
        self._store(items, known, model)
        with self._cond:
            self._backlog = max(0, self._backlog - len(items))
            self._cond.notify_all()
        return True

    def _store(
        self, items: list[tuple[int, str, bytes]], blobs: dict[bytes, bytes], model: str
    ) -> None:
        with self.db.write() as conn:
            for rid, _, chash in items:
                conn.execute(
                    "INSERT OR REPLACE INTO memory_vectors(rid, model, vector) "
                    "SELECT rid, ?, ? FROM memories"
                    " WHERE rid = ? AND content_hash = ? AND deleted = 0",
                    (model, blobs[chash], rid, chash),
                )
                if conn.changes():
                    conn.execute("INSERT INTO index_log(rid) VALUES (?)", (rid,))
                    conn.execute("DELETE FROM embed_queue WHERE rid = ?", (rid,))
                    continue
                deleted = scalar(conn, "SELECT deleted FROM memories WHERE rid = ?", (rid,))
                if deleted in (None, 1):  # the memory is gone: nothing left to embed
                    conn.execute("DELETE FROM embed_queue WHERE rid = ?", (rid,))
                # else: the text changed meanwhile; the row stays queued for its new text
