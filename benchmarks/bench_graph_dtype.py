"""How the HNSW graph's number type moves its build rate, search time and recall@10 at
100k (clustered vectors, the graph's own settings, one `Index.add` on every core), and
which type this machine gets (`cis.index.vectors.ann_dtype`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from common import clustered_vectors, emit, median, time_each
from usearch.index import Index

from cis.index import vectors

N = 100_000
QUERIES = 200
K = 10


def measure(dtype: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    ann = Index(
        ndim=data.shape[1],
        metric="ip",
        dtype=dtype,
        connectivity=vectors.ANN_CONNECTIVITY,
        expansion_add=vectors.ANN_EXPANSION_ADD,
        expansion_search=vectors.ANN_EXPANSION_SEARCH,
    )
    start = time.perf_counter()
    ann.add(np.arange(len(data), dtype=np.uint64), data)
    built = time.perf_counter() - start
    shared = [
        len(set(ann.search(q, K).keys.tolist()) & set(t.tolist()))
        for q, t in zip(queries, truth, strict=True)
    ]
    return {
        f"{dtype}_simd": ann.hardware_acceleration,
        f"{dtype}_build_vectors_per_s": len(data) / built,
        f"{dtype}_search_p50_ms": median(time_each(lambda q: ann.search(q, K), queries)) * 1000,
        f"{dtype}_recall_at_10": float(np.mean(shared)) / K,
    }


def main() -> None:
    data = clustered_vectors(N, seed=1)
    rng = np.random.default_rng(2)
    picks = data[rng.integers(0, N, QUERIES)] + 0.05 * rng.normal(size=(QUERIES, 384))
    queries = (picks / np.linalg.norm(picks, axis=1, keepdims=True)).astype(np.float32)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :K]
    figures = measure("f16", data, queries, truth) | measure("bf16", data, queries, truth)
    emit(
        "graph_dtype_100k",
        vectors=N,
        chosen=vectors.ann_dtype(),
        **figures,
        ratio_build_bf16_vs_f16=figures["bf16_build_vectors_per_s"]
        / figures["f16_build_vectors_per_s"],
        ratio_search_bf16_vs_f16=figures["bf16_search_p50_ms"] / figures["f16_search_p50_ms"],
        note="recall@10 against an exact float32 scan; build = one Index.add of all vectors",
    )


if __name__ == "__main__":
    main()
