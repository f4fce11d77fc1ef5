"""In-memory vector index: an HNSW graph (usearch) plus the vectors not in it yet.

Vectors are unit length, so similarity is the dot product (cosine). A new vector lands
in an exact part (`ExactRows`, scanned exactly); a search merges the graph's answer
with an exact scan of that part, so nothing waits for a build. The graph is never
changed in place: usearch holds the interpreter while it inserts (a save or a load of
100k vectors held it for 45-65 ms before its first progress call, measured), so a merge
builds the next graph in a child process (`graph_build`) from the last one and the
vectors waiting, and the index switches to it, viewed where its bytes lie. Rows of the
graph that an edit made stale are left out of answers until the next merge. A merge
begins once `ann_threshold` vectors wait for the first graph, MERGE_MIN for the next
ones, or fewer once edits have been quiet for a while; during `holding()` (a batch of
writes landing) none begins. A graph is saved and restored as those same bytes
(`snapshot`, `restore`).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import InvalidInput
from . import graph_build, stored
from .exact import ExactRows, members, ranked

# measured at 100k (clustered vectors, 2 cores): M=20 with a shallow build (48) inserts
# faster than M=16/64 (5.3-7.2k vs 5.1k vectors/s) at recall@10 0.986-0.992 searching 160.
# Searching 200: the centred nearest 10 (what a search ranks) at recall@10 0.9858-0.9878
# against 0.9843-0.9850 at 160, three builds, for 1.01-1.04 ms against 0.85-0.89 (240:
# 0.9865-0.9883, 1.14-1.24 ms); the margin over 0.98 that a graph built in merges needs
ANN_CONNECTIVITY = 20
ANN_EXPANSION_ADD = 48
ANN_EXPANSION_SEARCH = 200
MERGE_MIN = 2048  # vectors waiting that begin a merge at once (0.1 ms of exact scan)
# a merge takes at most this many waiting vectors, or as many as the graph holds: what
# waits shrinks as a large backlog goes in (searches scan it meanwhile), at the cost of
# sending the graph so far again (100k after an open with no snapshot: 15.7-18.8 s to a
# fast vector stage, against 17.4-20.1 s in one merge, alternated three times)
MERGE_STEP = 32_768
# fewer begin one once no edit came for this long: a merge costs about 0.55 s of CPU at
# 100k (the graph goes to the child and back) however few it adds, while 2k waiting
# vectors cost a search 0.1 ms
QUIET_S = 30.0
DEAD_ASK_MAX = 512  # stale graph rows a search looks past; more begin a merge at once
RETRY_FIRST_S = 60.0  # after a failed merge (a child out of memory, say), doubling to
RETRY_MAX_S = 3600.0  # this at most
GATHER_MAX = 2048  # a filter this small or smaller is answered exactly
FILTER_SEARCH_MAX = 4096  # graph candidates a filtered search asks for at most

log = logging.getLogger("cis.index")


@functools.cache
def ann_dtype() -> str:
    """How the graph holds its vectors: half the memory and snapshot of f32 either way.

    bfloat16 where this CPU has SIMD kernels for it: at 100k on 2 cores (AVX-512 BF16) it
    builds at 2.0-2.2x the rate of float16 and searches in 0.6-0.8x the time, at the same
    recall@10 (benchmarks/bench_graph_dtype.py). Without them, float16 (F16C or NEON).
    A snapshot keeps the type it was saved with.
    """
    from usearch.index import Index

    probe = Index(ndim=8, metric="ip", dtype="bf16")
    return "f16" if probe.hardware_acceleration == "serial" else "bf16"


def new_ann(dim: int, dtype: Any = None) -> Any:
    """An empty graph (of `dtype`, a usearch ScalarKind or its name; ann_dtype() if None)."""
    from usearch.index import Index

    return Index(
        ndim=dim,
        metric="ip",
        dtype=ann_dtype() if dtype is None else dtype,
        connectivity=ANN_CONNECTIVITY,
        expansion_add=ANN_EXPANSION_ADD,
        expansion_search=ANN_EXPANSION_SEARCH,
    )


def _keys(rids: np.ndarray | list[int]) -> np.ndarray:
    return np.asarray(rids, dtype=np.uint64)


def _sorted_keys(ann: Any) -> np.ndarray:
    return np.sort(np.asarray(ann.keys, dtype=np.int64))


def unit_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a float32 matrix scaled to unit length, and which of them could be
    (finite and not all zeros: a sum of squares cannot cancel, so NaN or inf in a row
    makes its sum so)."""
    squares = np.square(matrix, dtype=np.float64).sum(axis=1)
    usable = np.isfinite(squares) & (squares > 0)
    with np.errstate(all="ignore"):  # the rows that are not usable are not used
        units: np.ndarray = matrix / np.sqrt(squares).astype(np.float32)[:, None]
    return units, usable


class VectorIndex:
    """Maps memory rowids to vectors; thread-safe.

    With `build` False the index never builds a graph itself (short-lived processes,
    for which an exact scan is cheaper than a build), but it can `restore` one.
    `on_built` runs each time a merge has left every vector in the graph. Fewer than
    MERGE_MIN waiting vectors are merged once no edit came for `quiet_s`.
    """

    def __init__(
        self,
        dim: int,
        ann_threshold: int = 40_000,
        *,
        build: bool = True,
        on_built: Callable[[], object] | None = None,
        quiet_s: float | None = None,
    ):
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.can_build = build
        self.on_built = on_built
        self.quiet_s = QUIET_S if quiet_s is None else quiet_s
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._fresh = ExactRows(dim)
        self._ann: Any = None  # a usearch Index viewing _blob, never changed in place
        self._blob: bytes | bytearray | memoryview | None = None
        # the graph's keys, sorted: usearch's contains() on a viewed graph scans every
        # row for a key it lacks (1.2 s for 60k absent keys in 40k, measured)
        self._graphed = np.empty(0, dtype=np.int64)
        self._dead: set[int] = set()  # rowids whose row in the graph is stale or removed
        self._dead_sorted = np.empty(0, dtype=np.int64)
        self._touched: set[int] | None = None  # during a merge: rowids edited since it began
        self._epoch = 0  # bumped by clear(): a merge begun before it is dropped
        self._mover: threading.Thread | None = None
        self._build: graph_build.Build | None = None
        self._holds = 0  # batches of edits under way: no merge begins meanwhile
        self._hurry = 0  # callers of wait_built: a due merge begins at once
        self._last_edit = 0.0
        self._closed = False
        self._retry_at = 0.0  # after a failed merge, none begins before then (monotonic)
        self._backoff = RETRY_FIRST_S

    def __len__(self) -> int:
        return len(self._fresh) + self._graph_size()

    def _graph_size(self) -> int:
        return len(self._ann) - len(self._dead) if self._ann is not None else 0

    @property
    def uses_ann(self) -> bool:
        return self._ann is not None

    @property
    def pending(self) -> int:
        """Vectors not in the graph (scanned exactly)."""
        return len(self._fresh)

    def check(self, vector: object) -> np.ndarray:
        """`vector` as a unit float32 row, or InvalidInput if it is not a usable vector."""
        try:
            arr = np.asarray(vector, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"embedding is not a list of numbers ({exc})") from exc
        if arr.shape[0] != self.dim:
            raise InvalidInput(
                f"embedding has {arr.shape[0]} dimensions; this index has {self.dim}"
            )
        # a sum of squares, not np.linalg.norm: BLAS drops and retakes the interpreter
        # lock, and many tiny calls in a row keep every other thread waiting (measured)
        squares = float(np.square(arr, dtype=np.float64).sum())
        if not math.isfinite(squares):  # squares cannot cancel: NaN or inf is in arr
            raise InvalidInput("embedding holds NaN or infinite values")
        if squares == 0.0:
            raise InvalidInput("embedding is all zeros")
        unit: np.ndarray = arr / np.float32(math.sqrt(squares))
        return unit

    def check_all(self, vectors: Sequence[object]) -> np.ndarray | None:
        """`check` for many at once: unit float32 rows, or None when any one is not a
        usable vector (then `check` of each names which and why)."""
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            return None
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            return None
        units, usable = unit_rows(matrix)
        return units if usable.all() else None

    def units(self, blobs: Sequence[bytes]) -> list[np.ndarray | None]:
        """Each stored blob (index/stored.py) as a unit row, or None where it is not a
        usable vector (the wrong size, NaN or infinite values, all zeros): `check` for
        many at once."""
        out: list[np.ndarray | None] = [None] * len(blobs)
        fit, matrix = stored.decode(blobs, self.dim)
        if not fit:
            return out
        units, usable = unit_rows(matrix)
        for row, i in enumerate(fit):
            if usable[row]:
                out[i] = units[row]
        return out

    # ---- edits -------------------------------------------------------------------

    def upsert(self, rids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace rows; `vectors` must already be unit length."""
        if len(rids) == 0:
            return
        rids = np.asarray(rids, dtype=np.int64)
        with self._lock:
            self._outdate(rids)
            self._fresh.put(rids, vectors)
            self._edited(rids)

    def remove(self, rids: list[int]) -> None:
        if not rids:
            return
        gone = np.asarray(rids, dtype=np.int64)
        with self._lock:
            self._fresh.drop(rids)
            self._outdate(gone)
            self._edited(gone)

    def _outdate(self, rids: np.ndarray) -> None:
        """The graph's rows of `rids` no longer count (the lock is held)."""
        if self._ann is None:
            return
        present = self._in_graph(rids)
        if len(present):
            self._set_dead(self._dead | set(present.astype(np.int64).tolist()))

    def _set_dead(self, dead: set[int]) -> None:
        """The rowids whose rows in the graph are stale, as a set and sorted (the lock is
        held)."""
        self._dead = dead
        self._dead_sorted = np.sort(np.fromiter(dead, np.int64, len(dead)))

    def _edited(self, rids: np.ndarray) -> None:
        if self._touched is not None:
            self._touched.update(rids.tolist())
        self._last_edit = time.monotonic()
        self._start_mover()

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._fresh.clear()
            self._ann = self._blob = None
            self._graphed = self._graphed[:0]
            self._set_dead(set())
            if self._build is not None:
                self._build.kill()

    # ---- the HNSW graph ----------------------------------------------------------

    def _due(self) -> bool:
        """Whether vectors wait to be merged into the graph (the lock is held)."""
        if not self.can_build or self._closed or self._holds:
            return False
        if time.monotonic() < self._retry_at:  # the next edit after it tries again
            return False
        if self._ann is None:
            return len(self._fresh) >= self.ann_threshold
        return bool(len(self._fresh) or self._dead)

    def _urgent(self) -> bool:
        """Whether a due merge begins now, not once edits have been quiet for quiet_s."""
        return (
            self._hurry > 0
            or self._ann is None
            or len(self._fresh) >= MERGE_MIN
            or len(self._dead) > DEAD_ASK_MAX
        )

    def _start_mover(self) -> None:
        if self._mover is None and self._due():
            self._mover = threading.Thread(target=self._move, name="cis-hnsw", daemon=True)
            self._mover.start()
        elif self._mover is not None:
            self._changed.notify_all()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Begin no merge while a batch of edits lands (the merge after takes it all)."""
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                self._start_mover()

    def _move(self) -> None:
        try:
            while True:
                with self._lock:
                    while self._due() and not self._urgent():
                        left = self._last_edit + self.quiet_s - time.monotonic()
                        if left <= 0:
                            break
                        self._changed.wait(left)
                    if not self._due():
                        # cleared in the same hold as the check: whoever makes a merge due
                        # after it (a batch's end, an upsert) sees no mover and starts one
                        self._mover = None
                        return
                    epoch, base, drop = self._epoch, self._blob, self._dead_sorted
                    limit = max(MERGE_STEP, self._graph_size())
                    self._touched = set()
                merged = self._merge(epoch, base, drop, limit)
                if merged and not self.pending and not self._dead and self.on_built is not None:
                    self.on_built()
        finally:
            with self._lock:
                if self._mover is threading.current_thread():
                    self._mover = None
                self._touched = self._build = None
                self._changed.notify_all()

    def _merge(
        self,
        epoch: int,
        base: bytes | bytearray | memoryview | None,
        drop: np.ndarray,
        limit: int,
    ) -> bool:
        """Build, in a child process, `base` less `drop` plus about `limit` waiting
        vectors, and switch to it; what was edited meanwhile stays waiting. False if it
        was not."""
        sent: list[np.ndarray] = []
        build = None
        try:
            build = graph_build.Build(self.dim, base, drop)
            with self._lock:
                self._build = build
                if self._closed or self._epoch != epoch:
                    build.kill()
            at = 0
            while True:
                with self._lock:  # a block at a time: rows may move down between blocks
                    rids, rows = self._fresh.block(at)
                    if not len(rids) or at >= limit:
                        break
                    at += len(rids)
                    if self._touched:  # an edited row stays waiting: no need to send it
                        keep = ~np.isin(rids, np.fromiter(self._touched, np.int64))
                        rids, rows = rids[keep], rows[keep]
                if len(rids):
                    build.send(rids, rows)
                    sent.append(rids)
            blob = build.finish()
        except graph_build.BuildFailed as exc:
            with self._lock:
                if not self._closed and self._epoch == epoch:
                    self._retry_at = time.monotonic() + self._backoff
                    log.warning(
                        "vector graph not extended (searches scan what waits; trying again"
                        " after %.0f s): %s",
                        self._backoff,
                        exc,
                    )
                    self._backoff = min(2 * self._backoff, RETRY_MAX_S)
            return False
        finally:
            if build is not None:
                build.close()
        ann = new_ann(self.dim)
        ann.view(blob)
        with self._lock:
            touched = np.fromiter(self._touched or (), np.int64)
            self._touched = self._build = None
            if self._epoch != epoch:
                return False
            self._ann, self._blob, self._graphed = ann, blob, _sorted_keys(ann)
            stale = touched[members(touched, self._graphed)]
            self._set_dead(set(stale.tolist()))
            moved = np.concatenate(sent) if sent else np.empty(0, dtype=np.int64)
            self._fresh.drop_many(moved[~np.isin(moved, touched)])
            self._backoff = RETRY_FIRST_S
        return True

    def close(self) -> None:
        """Stop merging (a merge under way is dropped); searches go on."""
        with self._lock:
            self._closed = True
            if self._build is not None:
                self._build.kill()
            self._changed.notify_all()
        mover = self._mover
        if mover is not None and mover is not threading.current_thread():
            mover.join()

    def wait_built(self, timeout: float | None = None) -> bool:
        """Merge what waits now, not after quiet_s, and wait until every vector that will
        go into the graph is in it (and `on_built` has run); True when nothing is left."""
        with self._lock:
            self._hurry += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(lambda: self._mover is None, timeout)
            finally:
                self._hurry -= 1

    def snapshot(self) -> bytes | bytearray | memoryview | None:
        """The HNSW graph with its vectors, serialized; None while some vectors are not
        in a graph (or some of its rows are stale)."""
        with self._lock:
            if self._ann is None or len(self._fresh) or self._dead:
                return None
            return self._blob

    def restore(self, blob: bytes | bytearray | memoryview) -> None:
        """Switch to a graph made by snapshot() (replacing everything held now); the
        graph is viewed where it lies, so `blob` must not change."""
        from usearch.index import Index

        meta = Index.metadata(blob)
        if not meta or meta["dimensions"] != self.dim:
            raise ValueError("not a vector index snapshot of this dimension")
        if graph_build.too_holey(meta["count_present"], meta["count_deleted"]):
            raise ValueError("vector index snapshot has too many removed rows to read safely")
        ann = new_ann(self.dim)
        try:
            ann.view(blob)
        except RuntimeError as exc:
            raise ValueError(f"vector index snapshot unreadable: {exc}") from exc
        graphed = _sorted_keys(ann)
        with self._lock:
            self.clear()
            self._ann, self._blob, self._graphed = ann, blob, graphed

    # ---- queries -----------------------------------------------------------------

    def _vectors(self, rids: list[int]) -> tuple[list[int], np.ndarray]:
        """The rowids of `rids` that are indexed, and their vectors."""
        found, vectors = self._fresh.get(rids)
        # usearch's get() answers garbage for absent keys, so ask only for present ones
        present = self._in_graph(rids)
        if not len(present):
            return found, vectors
        graph = np.asarray(self._ann.get(present, dtype=np.float32), dtype=np.float32)
        both = np.concatenate([vectors, graph.reshape(len(present), self.dim)])
        return found + present.astype(np.int64).tolist(), both

    def vectors(self, rids: list[int]) -> tuple[list[int], np.ndarray]:
        """The rowids of `rids` that are indexed, and their vectors (float32 rows)."""
        with self._lock:
            return self._vectors(rids)

    def links(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The cosine of each pair of rowids (left[i], right[i]); NaN where an end is not
        indexed."""
        out = np.full(len(left), np.nan)
        if not len(left):
            return out
        with self._lock:
            if self._ann is not None:
                graphed = self._in_graph(np.union1d(left, right)).astype(np.int64)
                inside = members(left, graphed) & members(right, graphed)
                if inside.any():
                    out[inside] = self._graph_links(left[inside], right[inside])
            rest = np.isnan(out)
            if not rest.any():
                return out
            found, vectors = self._vectors(np.union1d(left[rest], right[rest]).tolist())
        held = np.asarray(found, dtype=np.int64)
        order = np.argsort(held)
        held = held[order]
        a, b = left[rest], right[rest]
        known = members(a, held) & members(b, held)
        at = np.flatnonzero(rest)[known]
        rows_a = order[np.searchsorted(held, a[known])]
        rows_b = order[np.searchsorted(held, b[known])]
        out[at] = np.einsum("ij,ij->i", vectors[rows_a], vectors[rows_b])
        return out

    def _in_graph(self, rids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The keys of the rowids of `rids` whose vectors are in the graph (and current),
        in order. A rowid in the exact part is never current in the graph: its row there,
        if any, is stale."""
        wanted = np.asarray(rids, dtype=np.int64)
        current = members(wanted, self._graphed)
        if self._dead:
            current &= ~members(wanted, self._dead_sorted)
        return _keys(wanted[current])

    def _graph_links(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The cosine of each pair, both in the graph, where the vectors lie: usearch
        reads a bfloat16 vector back into float32 one number at a time (0.59 ms for 879
        vectors, against 0.04 ms for the 450 pairs' distances)."""
        distances = self._ann.pairwise_distance(_keys(left), _keys(right))
        return 1.0 - np.asarray(distances, dtype=np.float64).reshape(-1)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The k nearest rowids to `query` (unit length), restricted to `allowed` (rowids
        sorted ascending) if given."""
        with self._lock:
            return self._search(query, k, allowed)

    def search_with_vectors(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[list[tuple[int, float]], np.ndarray]:
        """search(), with the vector of each hit (row i that of hit i), in one hold of the
        index (so no merge's switch comes between the two)."""
        with self._lock:
            near = self._search(query, k, allowed)
            wanted = [rid for rid, _ in near]
            found, vectors = self._vectors(wanted)
        if found == wanted:
            return near, vectors
        row = {rid: i for i, rid in enumerate(found)}
        kept = [hit for hit in near if hit[0] in row]
        return kept, vectors[np.asarray([row[rid] for rid, _ in kept], dtype=np.intp)]

    def _search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]]:
        if len(self) == 0 or k <= 0:
            return []
        graph = self._graph_size() > 0
        if graph and allowed is not None and len(allowed) <= GATHER_MAX:
            return self._gathered(query, k, allowed)
        found = self._fresh.best(query, k, allowed)
        if graph:
            more = self._graph_best(query, k, allowed)
            if more is None:
                return self._gathered(query, k, allowed)
            found += more
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:k]

    def _gathered(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]]:
        """Exact: the vectors of every allowed rowid (of every one if None), scanned."""
        if allowed is None:
            allowed = np.union1d(self._fresh.rids[: len(self._fresh)], self._graphed)
        found, vectors = self._vectors(allowed.tolist())
        return ranked(np.asarray(found, dtype=np.int64), vectors @ query, k)

    def _graph_best(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]] | None:
        """The graph's k best current rows (among `allowed` if given): as many candidates
        as the filter's share and the stale rows suggest, four times more while too few
        pass; None when an exact scan is due."""
        want = k if allowed is None else int(k * len(self) / len(allowed) * 1.2) + 16
        want += len(self._dead)
        while want <= max(FILTER_SEARCH_MAX, k):
            found = self._ann.search(query, min(want, len(self._ann)))
            keys = np.asarray(found.keys, dtype=np.int64)
            sims = 1.0 - np.asarray(found.distances, dtype=np.float64)
            keep = ~members(keys, self._dead_sorted)
            if allowed is not None:
                keep &= members(keys, allowed)
            if keep.sum() >= k or want >= len(self._ann):
                return list(zip(keys[keep].tolist(), sims[keep].tolist(), strict=True))
            want *= 4
        return None
