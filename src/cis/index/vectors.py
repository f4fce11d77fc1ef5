"""In-memory vector index: exact numpy scan up to a size, usearch HNSW above it.

Vectors are unit length, so similarity is the dot product (cosine). Rows live in one
contiguous float32 matrix that grows by doubling; a removal moves the last row into
the hole, so the scan never touches dead rows.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import InvalidInput

ANN_CONNECTIVITY = 16
ANN_EXPANSION_ADD = 128
ANN_EXPANSION_SEARCH = 96


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first."""
    if k <= 0 or scores.size == 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    return part[np.argsort(-scores[part], kind="stable")]


class VectorIndex:
    """Maps memory rowids to vectors; thread-safe."""

    def __init__(self, dim: int, ann_threshold: int = 20_000):
        self.dim = dim
        self.ann_threshold = ann_threshold
        self._lock = threading.RLock()
        self._matrix = np.empty((0, dim), dtype=np.float32)
        self._rids = np.empty(0, dtype=np.int64)
        self._slots: dict[int, int] = {}
        self._ann: Any = None

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def uses_ann(self) -> bool:
        return self._ann is not None

    def check(self, vector: object) -> np.ndarray:
        """`vector` as a unit float32 row, or InvalidInput if its shape is wrong."""
        arr = np.asarray(vector, dtype=np.float32).reshape(-1)
        if arr.shape[0] != self.dim:
            raise InvalidInput(
                f"embedding has {arr.shape[0]} dimensions, this index has {self.dim}"
            )
        if not np.all(np.isfinite(arr)):
            raise InvalidInput("embedding holds NaN or infinite values")
        norm = float(np.linalg.norm(arr))
        if norm == 0.0:
            raise InvalidInput("embedding is all zeros")
        return arr / norm

    def _grow(self, needed: int) -> None:
        if needed <= self._matrix.shape[0]:
            return
        capacity = max(needed, 2 * self._matrix.shape[0], 1024)
        matrix = np.empty((capacity, self.dim), dtype=np.float32)
        rids = np.empty(capacity, dtype=np.int64)
        n = len(self._slots)
        matrix[:n] = self._matrix[:n]
        rids[:n] = self._rids[:n]
        self._matrix, self._rids = matrix, rids

    def upsert(self, rids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace rows; `vectors` must already be unit length."""
        with self._lock:
            self._grow(len(self._slots) + len(rids))
            for rid, vector in zip(rids.tolist(), vectors, strict=True):
                slot = self._slots.get(rid)
                if slot is None:
                    slot = len(self._slots)
                    self._slots[rid] = slot
                    self._rids[slot] = rid
                self._matrix[slot] = vector
            if self._ann is not None:
                self._ann_remove(rids)
                self._ann.add(rids.astype(np.uint64), vectors)
            elif len(self._slots) >= self.ann_threshold:
                self._build_ann()

    def remove(self, rids: list[int]) -> None:
        with self._lock:
            gone = []
            for rid in rids:
                slot = self._slots.pop(rid, None)
                if slot is None:
                    continue
                gone.append(rid)
                last = len(self._slots)
                if slot != last:
                    moved = int(self._rids[last])
                    self._matrix[slot] = self._matrix[last]
                    self._rids[slot] = moved
                    self._slots[moved] = slot
            if self._ann is not None and gone:
                self._ann_remove(np.asarray(gone, dtype=np.int64))

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
            self._ann = None

    def _build_ann(self) -> None:
        from usearch.index import Index

        ann = Index(
            ndim=self.dim,
            metric="ip",
            dtype="f32",
            connectivity=ANN_CONNECTIVITY,
            expansion_add=ANN_EXPANSION_ADD,
            expansion_search=ANN_EXPANSION_SEARCH,
        )
        n = len(self._slots)
        if n:
            ann.add(self._rids[:n].astype(np.uint64), self._matrix[:n])
        self._ann = ann

    def _ann_remove(self, rids: np.ndarray) -> None:
        ann = self._ann
        present = [int(r) for r in rids.tolist() if ann.contains(int(r))]
        if present:
            ann.remove(present)

    def similarity(self, rids: list[int], query: np.ndarray) -> dict[int, float]:
        """Exact cosine of `query` to each indexed rowid in `rids`."""
        with self._lock:
            slots = [self._slots[r] for r in rids if r in self._slots]
            if not slots:
                return {}
            sims = self._matrix[slots] @ query
            return dict(zip(self._rids[slots].tolist(), sims.tolist(), strict=True))

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The k nearest rowids to `query` (unit length), restricted to `allowed` if given."""
        with self._lock:
            n = len(self._slots)
            if n == 0 or k <= 0:
                return []
            if allowed is not None:
                slots = np.fromiter(
                    (s for r in allowed.tolist() if (s := self._slots.get(r)) is not None),
                    dtype=np.int64,
                )
                if self._ann is None or len(slots) <= self.ann_threshold:
                    sims = self._matrix[slots] @ query
                    best = top_k(sims, k)
                    return list(
                        zip(self._rids[slots[best]].tolist(), sims[best].tolist(), strict=True)
                    )
            if self._ann is None:
                sims = self._matrix[:n] @ query
                best = top_k(sims, k)
                return list(zip(self._rids[best].tolist(), sims[best].tolist(), strict=True))
            return self._ann_search(query, k, allowed)

    def _ann_search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]]:
        want = k if allowed is None else min(len(self._slots), k * 8)
        found = self._ann.search(query, want)
        pairs = [
            (int(key), 1.0 - float(dist))
            for key, dist in zip(found.keys, found.distances, strict=True)
        ]
        if allowed is not None:
            allow = set(allowed.tolist())
            pairs = [p for p in pairs if p[0] in allow]
        return pairs[:k]
