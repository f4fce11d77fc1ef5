"""Search over 100k memories (384-d, vectors supplied): vector stage, whole hybrid search
with query embedding, HNSW recall against exact, and sqlite-vec's vec0 brute force on the
same vectors in the same run."""

from __future__ import annotations

import time

import apsw
import numpy as np
import sqlite_vec
from common import clustered_vectors, emit, median, percentile, sentences, temp_dir, time_calls

from cis import Node
from cis.index.vectors import VectorIndex

N = 100_000
QUERIES = 200
K = 10


def vec0_baseline(vectors: np.ndarray, queries: np.ndarray) -> list[float]:
    conn = apsw.Connection(str(temp_dir("vec0") / "vec0.db"))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.execute("CREATE VIRTUAL TABLE v USING vec0(embedding float[384] distance_metric=cosine)")
    with conn:
        conn.executemany(
            "INSERT INTO v(rowid, embedding) VALUES (?, ?)",
            ((i + 1, vec.tobytes()) for i, vec in enumerate(vectors)),
        )
    sql = "SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = ? ORDER BY distance"
    it = iter(queries[:20])
    return time_calls(lambda: conn.execute(sql, (next(it).tobytes(), K)).fetchall(), 20)


def main() -> None:
    texts = sentences(N, seed=1)
    vectors = clustered_vectors(N, seed=1)
    rng = np.random.default_rng(2)
    queries = clustered_vectors(QUERIES, seed=1)[rng.permutation(QUERIES)]
    queries = vectors[rng.integers(0, N, QUERIES)] + 0.05 * rng.normal(size=(QUERIES, 384))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

    with Node.open(temp_dir("search"), background=False) as node:
        start = time.perf_counter()
        for lo in range(0, N, 10_000):
            node.memory.add_many(
                {"text": texts[i], "embedding": vectors[i]} for i in range(lo, lo + 10_000)
            )
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        node.memory.search("warm up", embedding=queries[0], limit=K)
        load_s = time.perf_counter() - start
        index = node.memory.index
        it = iter(queries)
        vector_stage = time_calls(lambda: index.search(next(it), K), QUERIES)

        exact = VectorIndex(384, ann_threshold=10**9)
        exact.upsert(np.arange(1, N + 1), vectors)
        it = iter(queries)
        exact_stage = time_calls(lambda: exact.search(next(it), K), QUERIES)
        recall = []
        for q in queries:
            truth = {r for r, _ in exact.search(q, K)}
            recall.append(len(truth & {r for r, _ in index.search(q, K)}) / K)

        words = sentences(QUERIES, seed=3, length=4)  # distinct queries: no cache hits
        it_words = iter(words)
        hybrid = time_calls(lambda: node.memory.search(next(it_words), limit=K), QUERIES)
    vec0 = vec0_baseline(vectors, queries)
    emit(
        "search_100k",
        memories=N,
        vector_stage_p50_ms=median(vector_stage) * 1000,
        vector_stage_p95_ms=percentile(vector_stage, 95) * 1000,
        vector_index=("hnsw" if index.uses_ann else "exact"),
        hnsw_recall_at_10=float(np.mean(recall)),
        exact_scan_p50_ms=median(exact_stage) * 1000,
        hybrid_search_p50_ms=median(hybrid) * 1000,
        hybrid_search_p95_ms=percentile(hybrid, 95) * 1000,
        baseline_vec0_p50_ms=median(vec0) * 1000,
        speedup_vector_stage_vs_vec0=median(vec0) / median(vector_stage),
        import_s=build_s,
        first_search_load_s=load_s,
        note="hybrid = query embedding (MiniLM) + FTS5 + vectors + fusion, distinct queries",
    )


if __name__ == "__main__":
    main()
