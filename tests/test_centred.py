"""Meaning measured from the query's neighbourhood (cis.index.centred)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cis.index import centred
from cis.index.centred import nearest
from cis.index.vectors import VectorIndex

DIM = 16


def _unit(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return out


def _shared(rng: np.random.Generator, n: int) -> np.ndarray:
    """Vectors that share one strong direction, as texts of one store do."""
    common = np.zeros(DIM)
    common[0] = 3.0
    return _unit(common + rng.normal(size=(n, DIM)))


def test_what_every_memory_shares_counts_for_nothing() -> None:
    """A query of mostly what the store shares and a little of one memory's own: the
    plain cosine mostly ranks first the memories nearest the shared part, the centred
    one mostly finds that memory (20 stores)."""
    plain = found = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        index = VectorIndex(DIM)
        data = _shared(rng, 200)
        index.upsert(np.arange(1, 201), data)
        mean = data.mean(0)
        query = _unit((mean + 0.3 * (data[41] - mean))[None])[0]
        plain += index.search(query, 1)[0][0] == 42
        found += nearest(index, query, 10)[0][0][0] == 42
    assert plain <= 8 and found >= 16


def test_a_memory_asked_for_by_its_own_vector_scores_one() -> None:
    rng = np.random.default_rng(2)
    for n in (1, 2, 300):
        index = VectorIndex(DIM)
        data = _shared(rng, n)
        index.upsert(np.arange(1, n + 1), data)
        found, meaning = nearest(index, data[0], 3)
        assert found[0][0] == 1 and abs(found[0][1] - 1.0) < 1e-5
        assert abs(meaning.of([1])[1] - 1.0) < 1e-5


def test_a_single_memory_keeps_near_its_plain_cosine() -> None:
    index = VectorIndex(2)
    index.upsert(np.array([1]), _unit(np.array([[1.0, 0.0]])))
    query = _unit(np.array([[0.6, 0.8]]))[0]
    found, _ = nearest(index, query, 1)
    assert 0.5 < found[0][1] < 0.6  # the plain cosine is 0.6


def test_a_scoped_search_learns_nothing_of_other_scopes() -> None:
    """The centre comes from the allowed memories alone: what else the node holds moves
    no score of a filtered search."""
    rng = np.random.default_rng(3)
    mine = _shared(rng, 300)
    others = _unit(rng.normal(size=(3000, DIM)) + 2.0)
    alone = VectorIndex(DIM)
    alone.upsert(np.arange(1, 301), mine)
    shared = VectorIndex(DIM)
    shared.upsert(np.arange(1, 3301), np.concatenate([mine, others]))
    allowed = np.arange(1, 301)
    for query in _unit(rng.normal(size=(5, DIM))):
        assert nearest(shared, query, 20, allowed)[0] == nearest(alone, query, 20)[0]


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(60))), st.integers(1, 60))
def test_the_order_rows_came_in_moves_nothing(order: list[int], k: int) -> None:
    rng = np.random.default_rng(4)
    data = _shared(rng, 60)
    query = _unit(rng.normal(size=(1, DIM)))[0]
    first = VectorIndex(DIM)
    first.upsert(np.arange(1, 61), data)
    second = VectorIndex(DIM)
    picked = np.asarray(order)
    second.upsert(picked + 1, data[picked])
    assert nearest(first, query, k)[0] == nearest(second, query, k)[0]


def test_the_neighbourhood_is_a_fixed_size() -> None:
    """A search's limit does not move its centre: the same memory scores the same asked
    for 5 or for 400 candidates."""
    rng = np.random.default_rng(5)
    index = VectorIndex(DIM)
    index.upsert(np.arange(1, 1001), _shared(rng, 1000))
    query = _unit(rng.normal(size=(1, DIM)))[0]
    few, _ = nearest(index, query, 5)
    many, _ = nearest(index, query, 400)
    assert centred.NEIGHBOURHOOD < 400
    assert dict(many)[few[0][0]] == few[0][1]
