"""Search over 100k memories (384-d, vectors supplied): vector stage, whole hybrid search
with query embedding, HNSW recall against exact, and sqlite-vec's vec0 brute force on the
same vectors in the same run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import apsw
import numpy as np
import sqlite_vec
from common import (
    clustered_vectors,
    emit,
    median,
    percentile,
    sentences,
    temp_dir,
    time_calls,
    time_each,
)

from cis import Node
from cis.index.centred import nearest
from cis.index.vectors import VectorIndex

N = 100_000
PARAPHRASES = Path(__file__).parent / "data" / "paraphrase.jsonl"
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
    picks = vectors[rng.integers(0, N, QUERIES)] + 0.05 * rng.normal(size=(QUERIES, 384))
    queries = (picks / np.linalg.norm(picks, axis=1, keepdims=True)).astype(np.float32)
    data_dir = temp_dir("search")

    with Node.open(data_dir, background=False) as node:
        start = time.perf_counter()
        for lo in range(0, N, 10_000):
            node.memory.add_many(
                {"text": texts[i], "embedding": vectors[i]} for i in range(lo, lo + 10_000)
            )
        import_s = time.perf_counter() - start

    with Node.open(data_dir) as node:
        start = time.perf_counter()
        node.memory.search("warm up", embedding=queries[0], limit=K)
        first_search_s = time.perf_counter() - start  # exact scan while HNSW builds
        start = time.perf_counter()
        node.memory.index.wait_built()
        build_s = time.perf_counter() - start
        index = node.memory.index
        vector_stage = time_each(lambda q: nearest(index, q, K), queries)
        exact = VectorIndex(384, ann_threshold=10**9)
        exact.upsert(np.arange(1, N + 1), vectors)
        exact_stage = time_each(lambda q: nearest(exact, q, K), queries)
        recall = [
            len({r for r, _ in nearest(exact, q, K)[0]} & {r for r, _ in nearest(index, q, K)[0]})
            / K
            for q in queries
        ]
        words = sentences(QUERIES, seed=3, length=6)  # distinct: no cache hits
        hybrid = time_each(lambda q: node.memory.search(q, limit=K), words)
        natural = [json.loads(line)["question"] for line in PARAPHRASES.read_text().splitlines()]
        hybrid_natural = time_each(lambda q: node.memory.search(q, limit=K), natural)

    with Node.open(data_dir, background=False) as node:  # like a CLI call: restores
        start = time.perf_counter()
        node.memory.search("reopen", embedding=queries[1], limit=K)
        reopen_s = time.perf_counter() - start
        restored = node.memory.index.uses_ann
    vec0 = vec0_baseline(vectors, queries)
    emit(
        "search_100k",
        memories=N,
        vector_stage_p50_ms=median(vector_stage) * 1000,
        vector_stage_p95_ms=percentile(vector_stage, 95) * 1000,
        vector_index="hnsw" if index.uses_ann else "exact",
        hnsw_recall_at_10=float(np.mean(recall)),
        exact_scan_p50_ms=median(exact_stage) * 1000,
        hybrid_search_p50_ms=median(hybrid) * 1000,
        hybrid_search_p95_ms=percentile(hybrid, 95) * 1000,
        hybrid_search_english_questions_p50_ms=median(hybrid_natural) * 1000,
        baseline_vec0_p50_ms=median(vec0) * 1000,
        speedup_vector_stage_vs_vec0=median(vec0) / median(vector_stage),
        import_with_vectors_s=import_s,
        first_search_fresh_process_s=first_search_s,
        hnsw_background_build_s=build_s,
        first_search_after_reopen_s=reopen_s,
        reopen_restored_hnsw_snapshot=restored,
        note=(
            "vector stage = the centred nearest (cis.index.centred: the graph asked for the"
            " query's neighbourhood, rescored); hybrid = query embedding (MiniLM) + FTS5"
            " + vectors + fusion, distinct queries:"
            " 6 pseudo-words from the corpus vocabulary (many word pieces each), and the 50"
            " English questions of benchmarks/data/paraphrase.jsonl"
        ),
    )


if __name__ == "__main__":
    main()
