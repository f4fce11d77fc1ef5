"""Vectors in one contiguous float32 matrix, scanned exactly (numpy)."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first."""
    if k <= 0 or scores.size == 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    return part[np.argsort(-scores[part], kind="stable")]


def members(rids: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Which of `rids` are in `allowed` (sorted ascending), as a boolean mask."""
    if not len(allowed) or not len(rids):
        return np.zeros(len(rids), dtype=bool)
    at = np.minimum(np.searchsorted(allowed, rids), len(allowed) - 1)
    found: np.ndarray = allowed[at] == rids
    return found


class ExactRows:
    """Rowids and their unit vectors; not thread-safe (the owner locks).

    The matrix grows by doubling; a removal moves the last row into the hole, so a scan
    never touches dead rows, and the last rows can be taken off the end cheaply.
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.matrix = np.empty((0, dim), dtype=np.float32)
        self.rids = np.empty(0, dtype=np.int64)
        self.slots: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.slots)

    def __contains__(self, rid: int) -> bool:
        return rid in self.slots

    def put(self, rids: np.ndarray, vectors: np.ndarray) -> None:
        needed = len(self.slots) + len(rids)
        if needed > self.matrix.shape[0]:
            capacity = max(needed, 2 * self.matrix.shape[0], 1024)
            matrix = np.empty((capacity, self.dim), dtype=np.float32)
            ids = np.empty(capacity, dtype=np.int64)
            n = len(self.slots)
            matrix[:n], ids[:n] = self.matrix[:n], self.rids[:n]
            self.matrix, self.rids = matrix, ids
        for rid, vector in zip(rids.tolist(), vectors, strict=True):
            slot = self.slots.get(rid)
            if slot is None:
                slot = len(self.slots)
                self.slots[rid] = slot
                self.rids[slot] = rid
            self.matrix[slot] = vector

    def drop(self, rids: list[int]) -> None:
        for rid in rids:
            slot = self.slots.pop(rid, None)
            if slot is None:
                continue
            last = len(self.slots)
            if slot != last:
                moved = int(self.rids[last])
                self.matrix[slot] = self.matrix[last]
                self.rids[slot] = moved
                self.slots[moved] = slot

    def tail(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the last n rowids and vectors (taken off with `drop_tail`)."""
        end = len(self.slots)
        start = max(0, end - n)
        return self.rids[start:end].copy(), self.matrix[start:end].copy()

    def drop_tail(self, n: int) -> None:
        end = len(self.slots)
        for rid in self.rids[max(0, end - n) : end].tolist():
            del self.slots[rid]
        if not self.slots:
            self.clear()

    def clear(self) -> None:
        self.slots.clear()
        self.matrix = np.empty((0, self.dim), dtype=np.float32)
        self.rids = np.empty(0, dtype=np.int64)

    def get(self, rids: list[int]) -> tuple[list[int], np.ndarray]:
        """The rowids of `rids` held here, and their vectors."""
        slots = [self.slots[r] for r in rids if r in self.slots]
        return self.rids[slots].tolist(), self.matrix[slots]

    def best(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The k rows nearest `query`, among `allowed` (sorted) if given."""
        n = len(self.slots)
        if not n or k <= 0:
            return []
        rids, matrix = self.rids[:n], self.matrix[:n]
        if allowed is not None:
            keep = members(rids, allowed)
            rids, matrix = rids[keep], matrix[keep]
        return ranked(rids, matrix @ query, k)


def ranked(rids: np.ndarray, sims: np.ndarray, k: int) -> list[tuple[int, float]]:
    best = top_k(sims, k)
    return list(zip(rids[best].tolist(), sims[best].tolist(), strict=True))
