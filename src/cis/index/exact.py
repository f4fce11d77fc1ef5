"""Vectors held as float32 rows in fixed blocks, scanned exactly.

A scan runs usearch's exact kernel a block at a time, on one thread: 100k rows here in
7.2 ms of CPU (the 150 best), against 12 ms for numpy's product on one thread and
17-20 ms (10 ms wall) split over two; so it leaves the other core to the graph's build
or another search."""

from __future__ import annotations

import itertools

import numpy as np

BLOCK = 4096  # rows per block of the exact part (a block's scan holds the interpreter 0.3 ms)
DROP_ONE_BY_ONE = 64  # drop_many() moves this few rows one by one, packs for more


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

    Vectors live in fixed blocks of BLOCK rows, so growing never copies what is held (a
    copy of a large matrix would hold the interpreter); a removal moves the last row
    into the hole, so a scan never touches dead rows, and the last rows can be taken off
    the end cheaply.
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.blocks: list[np.ndarray] = []
        self.rids = np.empty(0, dtype=np.int64)
        self.slots: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.slots)

    def put(self, rids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace rows (of a rowid given twice, the last vector stays)."""
        _, last = np.unique(rids[::-1], return_index=True)
        if len(last) < len(rids):
            order = np.sort(len(rids) - 1 - last)
            rids, vectors = rids[order], vectors[order]
        needed = len(self.slots) + len(rids)
        while len(self.blocks) * BLOCK < needed:
            self.blocks.append(np.empty((BLOCK, self.dim), dtype=np.float32))
        if needed > len(self.rids):
            ids = np.empty(max(needed, 2 * len(self.rids)), dtype=np.int64)
            ids[: len(self.slots)] = self.rids[: len(self.slots)]
            self.rids = ids
        new: list[int] = []
        for row, rid in enumerate(rids.tolist()):
            slot = self.slots.get(rid)
            if slot is None:
                self.slots[rid] = len(self.slots)
                new.append(row)
            else:
                self._write(slot, vectors[row : row + 1])
        if not new:
            return
        first = len(self.slots) - len(new)
        self.rids[first : first + len(new)] = rids[new]
        fresh = vectors[new] if len(new) < len(rids) else vectors
        for lo in range(0, len(new), BLOCK):  # a block boundary at most once per block
            self._write(first + lo, fresh[lo : lo + BLOCK])

    def _write(self, slot: int, rows: np.ndarray) -> None:
        """Rows into consecutive slots from `slot` on."""
        done = 0
        while done < len(rows):
            block, at = divmod(slot + done, BLOCK)
            take = min(len(rows) - done, BLOCK - at)
            self.blocks[block][at : at + take] = rows[done : done + take]
            done += take

    def _rows(self, slots: np.ndarray) -> np.ndarray:
        out = np.empty((len(slots), self.dim), dtype=np.float32)
        which, at = np.divmod(slots, BLOCK)
        for block in np.unique(which).tolist():
            mine = which == block
            out[mine] = self.blocks[block][at[mine]]
        return out

    def drop(self, rids: list[int]) -> None:
        for rid in rids:
            slot = self.slots.pop(rid, None)
            if slot is None:
                continue
            last = len(self.slots)
            if slot != last:
                moved = int(self.rids[last])
                self._write(slot, self._rows(np.array([last])))
                self.rids[slot] = moved
                self.slots[moved] = slot
        self._trim()

    def drop_many(self, rids: np.ndarray) -> None:
        """drop() for many rows: the rows kept are packed into new blocks, one block's
        copy at a time (moving rows one by one took 0.4 s for 40k)."""
        n = len(self.slots)
        if len(rids) <= DROP_ONE_BY_ONE:
            self.drop(rids.tolist())
            return
        head = len(rids)
        if (
            not head % BLOCK
            and head <= n
            and np.array_equal(np.sort(rids), np.sort(self.rids[:head]))
        ):
            # the first blocks exactly (what a merge sent, in slot order): let them go
            del self.blocks[: head // BLOCK]
            self.rids = self.rids[head:].copy()
            self.slots = dict(zip(self.rids[: n - head].tolist(), range(n - head), strict=True))
            self._trim()
            return
        keep = np.flatnonzero(~np.isin(self.rids[:n], rids))
        blocks = []
        for lo in range(0, len(keep), BLOCK):
            block = np.empty((BLOCK, self.dim), dtype=np.float32)
            part = keep[lo : lo + BLOCK]
            block[: len(part)] = self._rows(part)
            blocks.append(block)
        self.blocks, self.rids = blocks, self.rids[keep]
        self.slots = dict(zip(self.rids.tolist(), range(len(keep)), strict=True))

    def block(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the rowids and vectors of slots start to start + BLOCK (fewer at the
        end; none past it)."""
        end = min(len(self.slots), start + BLOCK)
        if end <= start:
            return self.rids[:0].copy(), np.empty((0, self.dim), dtype=np.float32)
        return self.rids[start:end].copy(), self._rows(np.arange(start, end))

    def _trim(self) -> None:
        """Let go of blocks no row uses any more."""
        keep = -(-len(self.slots) // BLOCK)
        del self.blocks[keep:]
        if not self.slots:
            self.rids = np.empty(0, dtype=np.int64)

    def clear(self) -> None:
        self.slots.clear()
        self._trim()

    def get(self, rids: list[int]) -> tuple[list[int], np.ndarray]:
        """The rowids of `rids` held here, and their vectors."""
        slots = np.fromiter(map(self.slots.get, rids, itertools.repeat(-1)), np.int64, len(rids))
        slots = slots[slots >= 0]
        return self.rids[slots].tolist(), self._rows(slots)

    def best(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The k rows nearest `query`, among `allowed` (sorted) if given."""
        from usearch.index import search  # loaded once a search needs it

        n = len(self.slots)
        if not n or k <= 0:
            return []
        rids = self.rids[:n]
        keep = None if allowed is None else members(rids, allowed)
        query = np.ascontiguousarray(query, dtype=np.float32)
        at: list[np.ndarray] = []
        sims: list[np.ndarray] = []
        for lo in range(0, n, BLOCK):  # each block's own k best, then the best of those
            rows = self.blocks[lo // BLOCK][: min(BLOCK, n - lo)]
            picked = None  # the block's rows the filter keeps, by place in the block
            if keep is not None:
                picked = np.flatnonzero(keep[lo : lo + BLOCK])
                rows = rows[picked]
            if not len(rows):
                continue
            found = search(rows, query, min(k, len(rows)), "ip", exact=True, threads=1)
            where = np.asarray(found.keys, dtype=np.int64)
            at.append(lo + (where if picked is None else picked[where]))
            sims.append(1.0 - np.asarray(found.distances, dtype=np.float32))
        if not at:
            return []
        return ranked(rids[np.concatenate(at)], np.concatenate(sims), k)


def ranked(rids: np.ndarray, sims: np.ndarray, k: int) -> list[tuple[int, float]]:
    best = top_k(sims, k)
    return list(zip(rids[best].tolist(), sims[best].tolist(), strict=True))
