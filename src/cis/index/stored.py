"""How a vector is stored in the database and travels to peers: float16, little-endian.

Half the bytes of float32, and the order of an exact scan barely moves (recall@10 0.99+
against float32 at 100k, benchmarks/bench_disk.py). float32 blobs, written by earlier
versions or sent by their peers, are still read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STORED = np.dtype("<f2")
OLDER = np.dtype("<f4")


def encode(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=STORED).tobytes()


def decode(blobs: Sequence[bytes], dim: int) -> tuple[list[int], np.ndarray]:
    """The positions of the blobs that hold `dim` numbers, and those rows as float32."""
    rows: list[int] = []
    parts: list[np.ndarray] = []
    for dtype in (STORED, OLDER):
        width = dim * dtype.itemsize
        fit = [i for i, blob in enumerate(blobs) if len(blob) == width]
        if fit:
            rows += fit
            joined = b"".join(blobs[i] for i in fit)
            parts.append(np.frombuffer(joined, dtype=dtype).reshape(len(fit), dim))
    if not parts:
        return [], np.empty((0, dim), dtype=np.float32)
    matrix = np.concatenate(parts).astype(np.float32)
    return rows, matrix
