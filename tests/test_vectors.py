"""The in-memory vector index against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cis.errors import InvalidInput
from cis.index.embed import normalize
from cis.index.vectors import VectorIndex, top_k

DIM = 8


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return normalize(rng.normal(size=(n, dim)).astype(np.float32))


def test_top_k_orders_best_first() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7], dtype=np.float32)
    assert top_k(scores, 2).tolist() == [1, 3]
    assert top_k(scores, 10).tolist() == [1, 3, 2, 0]
    assert top_k(scores, 0).tolist() == []


ops = st.lists(
    st.tuples(st.sampled_from(["put", "del"]), st.integers(1, 30), st.integers(0, 2**32 - 1)),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, seed=st.integers(0, 2**32 - 1))
def test_matches_brute_force_after_any_edits(ops: list[tuple[str, int, int]], seed: int) -> None:
    index = VectorIndex(DIM, ann_threshold=10**9)
    model: dict[int, np.ndarray] = {}
    for op, rid, vseed in ops:
        if op == "put":
            vec = _unit(np.random.default_rng(vseed), 1)
            index.upsert(np.array([rid]), vec)
            model[rid] = vec[0]
        else:
            index.remove([rid])
            model.pop(rid, None)
    assert len(index) == len(model)
    query = _unit(np.random.default_rng(seed), 1)[0]
    got = index.search(query, 5)
    expected = sorted(((float(v @ query), r) for r, v in model.items()), reverse=True)[:5]
    assert [round(s, 5) for _, s in got] == [round(s, 5) for s, _ in expected]
    allowed = np.array(sorted(model)[::2], dtype=np.int64)
    got_allowed = {r for r, _ in index.search(query, 100, allowed)}
    assert got_allowed == set(allowed.tolist())


def test_hnsw_above_threshold_keeps_recall_and_follows_edits() -> None:
    rng = np.random.default_rng(1)
    centers = _unit(rng, 40, 64)
    data = normalize(centers[rng.integers(0, 40, 3000)] + 0.3 * rng.normal(size=(3000, 64)))
    index = VectorIndex(64, ann_threshold=1000)
    rids = np.arange(1, 3001)
    index.upsert(rids, data.astype(np.float32))
    assert index.uses_ann
    queries = normalize(centers[rng.integers(0, 40, 50)] + 0.3 * rng.normal(size=(50, 64)))
    recall = []
    for q in queries.astype(np.float32):
        exact = set((rids[np.argsort(-(data @ q))[:10]]).tolist())
        recall.append(len(exact & {r for r, _ in index.search(q, 10)}) / 10)
    assert np.mean(recall) >= 0.95
    index.remove([int(r) for r in rids[:1500]])
    found = {r for r, _ in index.search(queries[0].astype(np.float32), 50)}
    assert found and all(r > 1500 for r in found)


def test_rejects_bad_vectors() -> None:
    index = VectorIndex(DIM)
    with pytest.raises(InvalidInput):
        index.check(np.zeros(DIM))
    with pytest.raises(InvalidInput):
        index.check(np.ones(DIM + 1))
    assert np.isclose(np.linalg.norm(index.check(np.ones(DIM))), 1.0)
