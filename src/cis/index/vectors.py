"""In-memory vector index: an HNSW graph (usearch) plus the vectors not in it yet.

Vectors are unit length, so similarity is the dot product (cosine). A new vector lands
in an exact part (`ExactRows`, scanned with numpy); above `ann_threshold` vectors a
background thread (the mover) puts them into the graph a slice of about SLICE_S at a
time: a search merges the graph's answer with an exact scan of what has not moved yet,
so nothing waits for a build. usearch holds the interpreter while it inserts, so a slice
is the longest another thread waits for it. Callers of the index go before a slice for
GRACE_S; then that slice goes, then they do (turns, so that neither side starves), and
during `holding()` (a batch of writes landing) the mover waits. A graph can be saved and
restored (`snapshot`, `restore`), since building one takes a while.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..yielding import hand_over
from . import stored
from .exact import ExactRows, members, ranked

# measured at 100k (clustered vectors, 2 cores): M=20 with a shallow build (48) inserts
# faster than M=16/64 (5.3-7.2k vs 5.1k vectors/s) at recall@10 0.986-0.992 searching 160
ANN_CONNECTIVITY = 20
ANN_EXPANSION_ADD = 48
ANN_EXPANSION_SEARCH = 160
SLICE_S = 0.01  # the time one slice of graph insertions aims at (well under 50 ms)
GRACE_S = 0.002  # how long callers of the index go before a slice that waits for them
GATHER_MAX = 2048  # a filter this small or smaller is answered exactly
FILTER_SEARCH_MAX = 4096  # graph candidates a filtered search asks for at most
YIELD_S = 0.002  # how long a save or load holds the interpreter between pauses


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


def new_ann(dim: int) -> Any:
    from usearch.index import Index

    return Index(
        ndim=dim,
        metric="ip",
        dtype=ann_dtype(),
        connectivity=ANN_CONNECTIVITY,
        expansion_add=ANN_EXPANSION_ADD,
        expansion_search=ANN_EXPANSION_SEARCH,
    )


def _keys(rids: np.ndarray | list[int]) -> np.ndarray:
    return np.asarray(rids, dtype=np.uint64)


def _pauser() -> Callable[[int, int], bool]:
    """A usearch progress callback that lets other threads run every YIELD_S."""
    last = [time.perf_counter()]

    def pause(done: int, total: int) -> bool:
        now = time.perf_counter()
        if now - last[0] >= YIELD_S:
            hand_over()
            last[0] = time.perf_counter()
        return True

    # usearch compares the annotations with the types themselves, not their names
    pause.__annotations__ = {"done": int, "total": int, "return": bool}
    return pause


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
    `on_built` runs each time the mover has put every vector into the graph.
    """

    def __init__(
        self,
        dim: int,
        ann_threshold: int = 40_000,
        *,
        build: bool = True,
        on_built: Callable[[], object] | None = None,
    ):
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.can_build = build
        self.on_built = on_built
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._counting = threading.Lock()
        self._waiting = 0  # callers holding or waiting for the lock: the mover lets them first
        self._fresh = ExactRows(dim)
        self._ann: Any = None
        self._viewed: bytes | bytearray | memoryview | None = None  # the buffer _ann views
        self._mover: threading.Thread | None = None
        self._slice = 16
        self._holds = 0  # batches of edits under way: the mover waits for them
        self._saving = 0  # saves of the graph under way: searches go on, edits wait
        self._turn_at: float | None = None  # from then on the mover's next slice goes first
        self._turns = 0  # slices the mover took its turn for
        self._closed = False

    def __len__(self) -> int:
        return len(self._fresh) + (len(self._ann) if self._ann is not None else 0)

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
        with self._editing():
            if self._ann is not None:
                self._ann_remove(np.asarray(rids))
            self._fresh.put(np.asarray(rids), vectors)
            self._start_mover()

    def remove(self, rids: list[int]) -> None:
        if not rids:
            return
        with self._editing():
            self._fresh.drop(rids)
            if self._ann is not None:
                self._ann_remove(np.asarray(rids, dtype=np.int64))

    def _ann_remove(self, rids: np.ndarray) -> None:
        if self._viewed is not None:  # a viewed graph changes only as a copy of its own
            ann = new_ann(self.dim)
            ann.load(self._viewed)
            self._ann, self._viewed = ann, None
        present = self._in_graph(rids.tolist())
        if len(present):
            self._ann.remove(present)

    def clear(self) -> None:
        with self._editing():
            self._fresh.clear()
            self._ann = self._viewed = None

    # ---- the HNSW graph ----------------------------------------------------------

    def _due(self) -> bool:
        """Whether vectors wait to be moved into the graph (the lock is held)."""
        waiting = len(self._fresh)
        return (
            self.can_build
            and not self._closed
            and not self._holds
            and not self._saving
            and waiting > 0
            and (self._ann is not None or waiting >= self.ann_threshold)
        )

    def _start_mover(self) -> None:
        if self._mover is None and self._due():
            self._mover = threading.Thread(target=self._move, name="cis-hnsw", daemon=True)
            self._mover.start()
        elif self._mover is not None:
            self._changed.notify_all()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep the mover off while a batch of edits lands: the edits go at full speed
        (the mover would take turns with them), and the move resumes after."""
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
                moved = self._move_all()
                if moved and not self.pending and self.on_built is not None:
                    self.on_built()
                with self._lock:
                    if not self._due():
                        # cleared in the same hold as the check: whoever makes moving due
                        # after it (a batch's end, an upsert) sees no mover and starts one
                        self._mover = None
                        return
        finally:
            with self._lock:
                if self._mover is threading.current_thread():
                    self._mover = None
                self._turn_at = None
                self._changed.notify_all()

    def _move_all(self) -> int:
        """Move slices into the graph until none wait; how many moved."""
        moved = 0
        while True:
            with self._lock:
                if self._waiting:  # callers go first, for GRACE_S at most
                    self._turn_at = time.perf_counter() + GRACE_S
                    self._changed.wait_for(lambda: not self._waiting, GRACE_S)
                if not self._due():
                    self._end_turn()
                    return moved
                if self._ann is None:
                    self._ann = new_ann(self.dim)
                rids, vectors = self._fresh.tail(self._slice)
                start = time.perf_counter()
                self._ann.add(_keys(rids), vectors)
                took = time.perf_counter() - start
                self._fresh.drop_tail(len(rids))
                moved += len(rids)
                self._slice = max(4, min(1024, int(len(rids) * SLICE_S / max(took, 1e-6))))
                self._end_turn()
            hand_over()

    def _end_turn(self) -> None:
        if self._turn_at is not None:
            self._turn_at = None
            self._turns += 1
            self._changed.notify_all()

    def close(self) -> None:
        """Stop moving vectors into the graph (after the slice under way); searches go on."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        mover = self._mover
        if mover is not None and mover is not threading.current_thread():
            mover.join()

    def wait_built(self, timeout: float | None = None) -> bool:
        """Wait until every vector that will go into the graph is in it (and `on_built`
        has run); True when nothing is left to move."""
        with self._lock:
            return self._changed.wait_for(lambda: self._mover is None, timeout)

    def snapshot(self) -> bytearray | None:
        """The HNSW graph with its vectors, serialized; None while some vectors are not
        in a graph. Searches go on while it is written out (it takes 0.1 s at 100k);
        edits and the mover wait for it."""
        with self._lock:
            if self._ann is None or len(self._fresh):
                return None
            ann = self._ann
            self._saving += 1
        try:
            blob: bytearray = ann.save(progress=_pauser())
        finally:
            with self._lock:
                self._saving -= 1
                self._start_mover()
                self._changed.notify_all()
        return blob

    def restore(self, blob: bytes | bytearray | memoryview) -> None:
        """Switch to a graph made by snapshot() (replacing everything held now)."""
        from usearch.index import Index

        meta = Index.metadata(blob)
        if not meta or meta["dimensions"] != self.dim:
            raise ValueError("not a vector index snapshot of this dimension")
        ann = new_ann(self.dim)
        try:
            if self.can_build:
                ann.load(blob, progress=_pauser())
            else:  # a process that only reads it: the graph viewed where it lies
                ann.view(blob)
        except RuntimeError as exc:
            raise ValueError(f"vector index snapshot unreadable: {exc}") from exc
        with self._lock:
            self.clear()
            self._ann = ann
            self._viewed = None if self.can_build else blob

    # ---- queries -----------------------------------------------------------------

    @contextmanager
    def _editing(self) -> Iterator[None]:
        """Hold the index to change it: ahead of the mover, after any save under way."""
        with self._first():
            self._changed.wait_for(lambda: not self._saving)
            yield

    @contextmanager
    def _first(self) -> Iterator[None]:
        """Hold the index, ahead of the mover."""
        with self._counting:
            self._waiting += 1
        with self._lock:
            try:
                if self._turn_at is not None and time.perf_counter() >= self._turn_at:
                    turn = self._turns  # the mover waited its turn: one slice, then us
                    self._changed.wait_for(lambda: self._turns != turn or self._turn_at is None)
                yield
            finally:
                with self._counting:
                    self._waiting -= 1
                if not self._waiting:
                    self._changed.notify_all()

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
        with self._first():
            return self._vectors(rids)

    def links(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The cosine of each pair of rowids (left[i], right[i]); NaN where an end is not
        indexed."""
        out = np.full(len(left), np.nan)
        if not len(left):
            return out
        with self._first():
            if self._ann is not None:
                graphed = self._in_graph(np.union1d(left, right).tolist()).astype(np.int64)
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

    def _in_graph(self, rids: list[int]) -> np.ndarray:
        """The keys of the rowids of `rids` whose vectors are in the graph, in order."""
        exact = self._fresh.slots
        keys = _keys([r for r in rids if r not in exact])
        if self._ann is None or not len(keys):
            return keys[:0]
        present: np.ndarray = keys[np.asarray(self._ann.contains(keys), dtype=bool).reshape(-1)]
        return present

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
        with self._first():
            return self._search(query, k, allowed)

    def search_with_vectors(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[list[tuple[int, float]], np.ndarray]:
        """search(), with the vector of each hit (row i that of hit i), in one hold of the
        index (so the mover takes no slice of the graph's build between the two)."""
        with self._first():
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
        graph = self._ann is not None and len(self._ann) > 0
        if graph and allowed is not None and len(allowed) <= GATHER_MAX:
            return self._gathered(query, k, allowed)
        found = self._fresh.best(query, k, allowed)
        if graph and allowed is None:
            found += self._ann_search(query, k)
        elif graph:
            assert allowed is not None
            more = self._ann_filtered(query, k, allowed)
            if more is None:
                return self._gathered(query, k, allowed)
            found += more
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:k]

    def _gathered(self, query: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
        """Exact: the vectors of every allowed rowid, scanned."""
        found, vectors = self._vectors(allowed.tolist())
        return ranked(np.asarray(found, dtype=np.int64), vectors @ query, k)

    def _ann_filtered(
        self, query: np.ndarray, k: int, allowed: np.ndarray
    ) -> list[tuple[int, float]] | None:
        """The graph's best among `allowed`: as many candidates as the filter's share
        suggests, four times more while too few pass; None when an exact scan is due."""
        want = int(k * len(self) / len(allowed) * 1.2) + 16
        while want <= FILTER_SEARCH_MAX:
            keys, sims = self._ann_found(query, want)
            keep = members(keys, allowed)
            if keep.sum() >= k or want >= len(self._ann):
                return list(zip(keys[keep].tolist(), sims[keep].tolist(), strict=True))
            want *= 4
        return None

    def _ann_found(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The graph's k nearest: rowids and similarities."""
        found = self._ann.search(query, min(k, len(self._ann)))
        keys = np.asarray(found.keys, dtype=np.int64)
        return keys, 1.0 - np.asarray(found.distances, dtype=np.float64)

    def _ann_search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        keys, sims = self._ann_found(query, k)
        return list(zip(keys.tolist(), sims.tolist(), strict=True))
