"""Where HNSW should take over from the exact scan: latency and recall@10 by corpus size."""

from __future__ import annotations

import time

import numpy as np
from common import clustered_vectors, emit, median, time_each

from cis.config import Config
from cis.index.vectors import VectorIndex

SIZES = (5_000, 10_000, 20_000, 30_000, 40_000)
QUERIES = 200
K = 10


def main() -> None:
    data = clustered_vectors(max(SIZES), seed=7)
    rng = np.random.default_rng(8)
    rows = []
    for n in SIZES:
        picks = data[rng.integers(0, n, QUERIES)] + 0.05 * rng.normal(size=(QUERIES, 384))
        queries = (picks / np.linalg.norm(picks, axis=1, keepdims=True)).astype(np.float32)
        exact = VectorIndex(384, ann_threshold=10**9)
        exact.upsert(np.arange(1, n + 1), data[:n])
        ann = VectorIndex(384, ann_threshold=n)
        start = time.perf_counter()
        ann.upsert(np.arange(1, n + 1), data[:n])
        ann.wait_built()
        build_s = time.perf_counter() - start
        exact_t = time_each(lambda q, index=exact: index.search(q, K), queries)
        ann_t = time_each(lambda q, index=ann: index.search(q, K), queries)
        recall = np.mean(
            [
                len({r for r, _ in exact.search(q, K)} & {r for r, _ in ann.search(q, K)}) / K
                for q in queries
            ]
        )
        rows.append(
            {
                "n": n,
                "exact_p50_ms": median(exact_t) * 1000,
                "hnsw_p50_ms": median(ann_t) * 1000,
                "hnsw_recall_at_10": float(recall),
                "hnsw_build_s": build_s,
            }
        )
    faster = [
        r["n"]
        for r in rows
        if r["hnsw_p50_ms"] < r["exact_p50_ms"] and r["hnsw_recall_at_10"] >= 0.98
    ]
    emit(
        "ann_switch_point",
        sizes=rows,
        smallest_size_where_hnsw_is_faster_with_recall_098=min(faster) if faster else None,
        configured_threshold=Config().ann_threshold,
        note="exact = numpy scan of float32 rows in blocks; HNSW = usearch as configured",
    )


if __name__ == "__main__":
    main()
