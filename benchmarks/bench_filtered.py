"""What a filter costs the vector stage at 100k memories (384-d, vectors supplied): the
same queries with and without `scope=`, with all 100k in one scope and with 100k spread
over 100 scopes of 1k; the vector stage alone (the scope's rowids cached, as a node keeps
them) and the whole vector-mode search; recall@10 of the filtered results against an exact
scan of the scope, all in the same run."""

from __future__ import annotations

from typing import Any

import numpy as np
from common import clustered_vectors, emit, median, temp_dir, time_each

from cis import Node
from cis.index.centred import nearest
from cis.index.filters import Filters
from cis.index.vectors import VectorIndex
from cis.memory.search import CANDIDATES

N = 100_000
K = 10
QUERIES = 200


def layout(vectors: np.ndarray, queries: np.ndarray, scopes: int) -> dict[str, Any]:
    size = N // scopes
    with Node.open(temp_dir(f"filtered-{scopes}")) as node:
        for lo in range(0, N, 10_000):
            node.memory.add_many(
                {"text": f"memory {i}", "embedding": vectors[i], "scope": f"project/p{i // size}"}
                for i in range(lo, lo + 10_000)
            )
        memory = node.memory
        memory.search("load", embedding=queries[0], limit=K)
        memory.index.wait_built()
        index, searcher = memory.index, memory.searcher
        # each query asks the scope its nearest memory is in (a scope with answers)
        owners = [f"project/p{int(np.argmax(vectors @ q)) // size}" for q in queries]
        allowed = {}
        with memory.db.read() as conn:
            for scope in set(owners):
                allowed[scope] = searcher._allowed(conn, Filters(scope=scope))
        plain = time_each(lambda q: nearest(index, q, CANDIDATES), queries)
        pairs = list(zip(queries, owners, strict=True))
        scoped = time_each(lambda p: nearest(index, p[0], CANDIDATES, allowed[p[1]]), pairs)
        exact = VectorIndex(384, ann_threshold=10**9)
        exact.upsert(np.arange(1, N + 1), vectors)
        recall = []
        for q, scope in pairs:
            rids = allowed[scope]
            truth = {r for r, _ in nearest(exact, q, K, rids)[0]}
            got = {r for r, _ in nearest(index, q, K, rids)[0]}
            recall.append(len(truth & got) / K)
        whole_plain = time_each(
            lambda q: memory.search("", embedding=q, mode="vector", limit=K), queries
        )
        whole_scoped = time_each(
            lambda p: memory.search("", embedding=p[0], mode="vector", limit=K, scope=p[1]), pairs
        )
        assert index.uses_ann
    return {
        "scopes": scopes,
        "memories_per_scope": size,
        "vector_stage_p50_ms": median(plain) * 1000,
        "vector_stage_scoped_p50_ms": median(scoped) * 1000,
        "ratio_vector_stage_scoped_vs_plain": median(scoped) / median(plain),
        "scoped_recall_at_10": float(np.mean(recall)),
        "vector_search_p50_ms": median(whole_plain) * 1000,
        "vector_search_scoped_p50_ms": median(whole_scoped) * 1000,
        "ratio_vector_search_scoped_vs_plain": median(whole_scoped) / median(whole_plain),
    }


def main() -> None:
    vectors = clustered_vectors(N, seed=1)
    rng = np.random.default_rng(2)
    picks = vectors[rng.integers(0, N, QUERIES)] + 0.05 * rng.normal(size=(QUERIES, 384))
    queries = (picks / np.linalg.norm(picks, axis=1, keepdims=True)).astype(np.float32)
    emit(
        "filtered_search_100k",
        memories=N,
        layouts=[layout(vectors, queries, scopes) for scopes in (1, 100)],
        note=(
            f"vector stage = the centred nearest {CANDIDATES} (a search's pool; the graph asked"
            " for the query's neighbourhood, rescored);"
            " vector search = memory.search(mode='vector') with the query vector given"
        ),
    )


if __name__ == "__main__":
    main()
