"""The in-memory vector index against a brute-force reference."""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cis.errors import InvalidInput
from cis.index.embed import normalize
from cis.index.exact import top_k
from cis.index.vectors import VectorIndex

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
    assert [s for _, s in got] == pytest.approx([s for s, _ in expected], abs=1e-5)
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
    assert index.wait_built(120) and index.uses_ann
    queries = normalize(centers[rng.integers(0, 40, 50)] + 0.3 * rng.normal(size=(50, 64)))
    recall = []
    for q in queries.astype(np.float32):
        exact = set((rids[np.argsort(-(data @ q))[:10]]).tolist())
        recall.append(len(exact & {r for r, _ in index.search(q, 10)}) / 10)
    assert np.mean(recall) >= 0.95
    index.remove([int(r) for r in rids[:1500]])
    found = {r for r, _ in index.search(queries[0].astype(np.float32), 50)}
    assert found and all(r > 1500 for r in found)
    allowed = np.arange(2000, 2100)
    hits = index.search(queries[1].astype(np.float32), 5, allowed)
    expected = allowed[np.argsort(-(data[allowed - 1] @ queries[1]))[:5]]
    assert [r for r, _ in hits] == expected.tolist()
    assert index.snapshot() is None  # the graph holds stale rows until the next merge
    assert index.wait_built(120)  # 1,500 stale rows: a merge begins at once
    restored = VectorIndex(64, ann_threshold=1000)
    blob = index.snapshot()
    assert blob is not None
    restored.restore(blob)
    assert restored.search(queries[2].astype(np.float32), 10) == index.search(
        queries[2].astype(np.float32), 10
    )


def _clustered(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    centers = _unit(rng, 40, dim)
    noisy = centers[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, dim))
    return normalize(noisy.astype(np.float32))


def test_edits_while_the_mover_runs_are_kept() -> None:
    rng = np.random.default_rng(3)
    index = VectorIndex(32, ann_threshold=2000)
    data = _unit(rng, 3000, 32)
    index.upsert(np.arange(1, 2001), data[:2000])  # starts the mover
    index.upsert(np.arange(2001, 3001), data[2000:])  # lands while it runs
    index.remove(list(range(1, 101)))
    replaced = _unit(rng, 100, 32)
    index.upsert(np.arange(101, 201), replaced)  # some already moved, some not
    assert index.wait_built(120) and index.uses_ann and index.pending == 0
    assert len(index) == 2900
    truth = dict(enumerate(data, start=1)) | dict(zip(range(101, 201), replaced, strict=True))
    for rid in range(1, 101):
        del truth[rid]
    query = _unit(rng, 1, 32)[0]
    found, vectors = index.vectors(list(range(1, 3001)))
    got = dict(zip(found, (vectors @ query).tolist(), strict=True))
    assert set(got) == set(truth)  # nothing removed comes back, nothing kept is lost
    expected = {rid: float(vector @ query) for rid, vector in truth.items()}
    assert max(abs(got[r] - expected[r]) for r in got) < 1e-2  # bf16 or f16 in the graph
    assert index.search(replaced[7], 1)[0][0] == 108


def test_searches_during_a_move_see_every_vector() -> None:
    rng = np.random.default_rng(5)
    data = _clustered(rng, 6000, 32)
    index = VectorIndex(32, ann_threshold=1000)
    index.upsert(np.arange(1, 6001), data)
    hits = []
    while index.pending and len(hits) < 500:  # graph and exact part answer together
        assert len(index) == 6000
        rid = int(rng.integers(1, 6001))
        hits.append(index.search(data[rid - 1], 1)[0][0] == rid)
    assert index.wait_built(120)
    assert hits and np.mean(hits) >= 0.95  # the graph is approximate


def test_close_stops_the_mover_and_search_goes_on() -> None:
    rng = np.random.default_rng(7)
    data = _unit(rng, 4000, 16)
    index = VectorIndex(16, ann_threshold=500)
    index.upsert(np.arange(1, 2001), data[:2000])
    assert index.wait_built(120)
    index.close()
    index.upsert(np.arange(2001, 4001), data[2000:])
    assert index.wait_built(0) and index.pending == 2000  # no mover after close
    assert index.snapshot() is None  # a graph without every vector is not saved
    assert index.search(data[2999], 1)[0][0] == 3000  # from the exact part
    assert index.search(data[9], 1)[0][0] == 10  # from the graph
    top = index.search(data[2999], 50)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)


@pytest.mark.parametrize(
    ("gather_max", "search_max", "share"),
    [(2048, 4096, 200), (10, 4096, 3000), (10, 64, 40)],
    ids=["gathered", "graph", "graph-too-few-then-gathered"],
)
def test_filtered_search_matches_brute_force(
    monkeypatch: pytest.MonkeyPatch, gather_max: int, search_max: int, share: int
) -> None:
    from cis.index import vectors

    monkeypatch.setattr(vectors, "GATHER_MAX", gather_max)
    monkeypatch.setattr(vectors, "FILTER_SEARCH_MAX", search_max)
    rng = np.random.default_rng(share)
    data = _clustered(rng, 5000, 32)
    index = VectorIndex(32, ann_threshold=1000)
    index.upsert(np.arange(1, 4501), data[:4500])
    assert index.wait_built(120)
    index.close()
    index.upsert(np.arange(4501, 5001), data[4500:])  # stays in the exact part
    allowed = np.sort(rng.choice(np.arange(1, 5001), share, replace=False))
    recall = []
    for q in _clustered(rng, 20, 32):
        got = index.search(q, 10, allowed)
        assert all(members_ok in set(allowed.tolist()) for members_ok, _ in got)
        sims = data[allowed - 1] @ q
        exact = allowed[np.argsort(-sims)[:10]].tolist()
        recall.append(len(set(exact) & {r for r, _ in got}) / 10)
        if share <= gather_max or search_max < 100:  # answered exactly, to the graph's
            # precision (bfloat16 or float16): ties closer than that may swap
            true = dict(zip(allowed.tolist(), sims.tolist(), strict=True))
            tenth = true[exact[-1]]
            assert len(got) == 10
            assert all(abs(s - true[r]) < 1e-2 and true[r] > tenth - 1e-2 for r, s in got)
    assert np.mean(recall) >= 0.95


def test_rejects_bad_vectors() -> None:
    index = VectorIndex(DIM)
    with pytest.raises(InvalidInput):
        index.check(np.zeros(DIM))
    with pytest.raises(InvalidInput):
        index.check(np.ones(DIM + 1))
    assert np.isclose(np.linalg.norm(index.check(np.ones(DIM))), 1.0)


def test_checking_many_vectors_at_once_agrees_with_one_by_one() -> None:
    index = VectorIndex(DIM)
    rng = np.random.default_rng(4)
    given = [rng.normal(size=DIM) * 3 for _ in range(5)] + [list(rng.normal(size=DIM))]
    units = index.check_all(given)
    assert units is not None
    for row, vector in zip(units, given, strict=True):
        assert np.allclose(row, index.check(vector), atol=1e-6)
    for bad in (np.zeros(DIM), np.ones(DIM + 1), [np.nan] * DIM, None, "many"):
        assert index.check_all([*given, bad]) is None  # check() of each then names it


def test_stored_blobs_become_unit_rows_or_none_as_check_would_judge_them() -> None:
    index = VectorIndex(DIM)
    rng = np.random.default_rng(5)
    good = [rng.normal(size=DIM) * 2 for _ in range(3)]
    blobs = [
        good[0].astype("<f2").tobytes(),  # as stored now
        good[1].astype("<f4").tobytes(),  # as older versions stored it
        np.zeros(DIM, "<f2").tobytes(),
        np.full(DIM, np.nan, "<f2").tobytes(),
        np.full(DIM, np.inf, "<f4").tobytes(),
        good[2].astype("<f2").tobytes()[:-2],  # one number short
        good[2].astype("<f2").tobytes(),
    ]
    rows = index.units(blobs)
    assert [r is None for r in rows] == [False, False, True, True, True, True, False]
    for row, vector in zip([rows[0], rows[1], rows[6]], good, strict=True):
        assert row is not None and np.allclose(row, index.check(vector), atol=2e-3)


@functools.cache
def _half_graphed() -> tuple[VectorIndex, np.ndarray]:
    """An index whose rows 1..40 are in the graph and 41..50 wait in the exact part."""
    data = _clustered(np.random.default_rng(9), 50, 8)
    index = VectorIndex(8, ann_threshold=30)
    index.upsert(np.arange(1, 41), data[:40])
    assert index.wait_built(30) and index.pending == 0
    index.close()  # 41..50 stay out of the graph: scanned exactly
    index.upsert(np.arange(41, 51), data[40:])
    return index, data


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=40))
@settings(max_examples=60, deadline=None)
def test_links_are_the_cosines_of_the_pairs_whose_ends_are_indexed(
    pairs: list[tuple[int, int]],
) -> None:
    index, data = _half_graphed()
    ends = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    got = index.links(ends[:, 0], ends[:, 1])
    assert len(got) == len(pairs)
    for (a, b), cosine in zip(pairs, got.tolist(), strict=True):
        if 1 <= a <= 50 and 1 <= b <= 50:  # the graph keeps bfloat16 or float16
            assert cosine == pytest.approx(float(data[a - 1] @ data[b - 1]), abs=1e-2)
        else:
            assert np.isnan(cosine)


def test_model_loads_after_an_hnsw_index_was_built() -> None:
    """usearch 2.26 made a later `import onnxruntime` segfault; the pin must keep this safe."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from cis.index.vectors import VectorIndex\n"
        "from cis.index.embed import MiniLMEmbedder, normalize\n"
        "index = VectorIndex(384, ann_threshold=10)\n"
        "index.upsert(np.arange(1, 41), normalize(np.random.rand(40, 384).astype(np.float32)))\n"
        "assert index.wait_built(60) and index.uses_ann\n"
        "print(MiniLMEmbedder().embed(['still alive']).shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(1, 384)" in done.stdout


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["put", "del", "many", "head"]),
            st.lists(st.integers(1, 12_000), min_size=1, max_size=3),
            st.integers(1, 9_000),
        ),
        max_size=12,
    )
)
def test_exact_rows_hold_what_was_put_across_blocks(ops: list[tuple[str, list[int], int]]) -> None:
    from cis.index import exact

    rows = exact.ExactRows(4)
    model: dict[int, np.ndarray] = {}
    for op, seeds, count in ops:
        if op == "put":  # a run of rowids from the first seed, the others repeated in it
            rids = np.concatenate([np.arange(seeds[0], seeds[0] + count), seeds[1:]])
            vectors = np.random.default_rng(seeds[0]).normal(size=(len(rids), 4))
            rows.put(rids, vectors.astype(np.float32))
            model.update(zip(rids.tolist(), vectors.astype(np.float32), strict=True))
        elif op == "del":
            gone = list(range(seeds[0], seeds[0] + count))
            rows.drop(gone)
            for rid in gone:
                model.pop(rid, None)
        elif op == "many":  # every other rowid of a run (most rows, or few, go at once)
            gone = list(range(seeds[0], seeds[0] + count, 2))
            rows.drop_many(np.array(gone, dtype=np.int64))
            for rid in gone:
                model.pop(rid, None)
        else:  # the rows of the first blocks, as a merge sends them
            head = rows.rids[: min(len(rows), count) // exact.BLOCK * exact.BLOCK]
            rows.drop_many(head.copy())
            for rid in head.tolist():
                del model[rid]
    assert len(rows) == len(model)
    blocks = [rows.block(start) for start in range(0, len(rows) + 1, exact.BLOCK)]
    assert not len(rows.block(len(rows))[0])
    held = np.concatenate([rids for rids, _ in blocks])
    assert sorted(held.tolist()) == sorted(model)  # the blocks hold each row once
    for rid, vector in zip(held.tolist(), np.concatenate([v for _, v in blocks]), strict=True):
        assert np.array_equal(model[rid], vector)
    found, vectors = rows.get(sorted(model))
    assert found == sorted(model)
    for rid, vector in zip(found, vectors, strict=True):
        assert np.array_equal(model[rid], vector)
    if model:
        query = np.ones(4, dtype=np.float32)
        best = rows.best(query, 3)
        # float32 sums in another order: absolute, since a dot near 0 differs relatively
        assert [s for _, s in best] == pytest.approx(
            sorted((float(v @ query) for v in model.values()), reverse=True)[:3], abs=1e-6
        )


def test_searchers_writers_and_the_mover_all_get_through() -> None:
    """Turns between callers and the mover: nobody waits for good, nothing is lost."""
    import threading

    rng = np.random.default_rng(11)
    data = _clustered(rng, 8000, 32)
    index = VectorIndex(32, ann_threshold=1000)
    index.upsert(np.arange(1, 4001), data[:4000])  # the mover starts
    failures: list[BaseException] = []
    writing = threading.Event()

    def search(seed: int) -> None:
        mine = np.random.default_rng(seed)
        try:
            while not writing.is_set() or index.pending:
                index.search(data[int(mine.integers(0, 4000))], 5)
        except BaseException as exc:  # reported below
            failures.append(exc)

    searchers = [threading.Thread(target=search, args=(seed,)) for seed in range(3)]
    for thread in searchers:
        thread.start()
    for lo in range(4000, 8000, 500):  # writes land while searches and the mover go on
        with index.holding():
            index.upsert(np.arange(lo + 1, lo + 501), data[lo : lo + 500])
        index.remove([lo - 3999])
    writing.set()
    assert index.wait_built(120)
    for thread in searchers:
        thread.join(120)
        assert not thread.is_alive()
    assert not failures
    assert len(index) == 8000 - 8 and index.pending == 0


@pytest.mark.parametrize("k", [1, 25, 5000])
def test_a_scan_block_by_block_ranks_as_one_scan(k: int) -> None:
    """Each block's k best, then the best of those, are the k best of one matrix product,
    filtered or not (a filter leaves some blocks fewer than k rows, or none)."""
    from cis.index import exact

    n = 3 * exact.BLOCK + 123  # a last block only partly filled
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    rids = rng.permutation(np.arange(1, 3 * n))[:n]
    rows = exact.ExactRows(8)
    rows.put(rids, vectors)
    query = rng.normal(size=8).astype(np.float32)
    sims = vectors @ query
    for keep in (None, np.sort(rids[::3]), np.sort(rids[: exact.BLOCK // 2]), rids[:0]):
        mask = np.ones(n, bool) if keep is None else np.isin(rids, keep)
        order = np.argsort(-sims[mask], kind="stable")[:k]
        found = rows.best(query, k, keep)
        # the same scores in the same order; rows whose scores differ by a rounding may
        # trade places (the kernel sums in another order than BLAS)
        assert [s for _, s in found] == pytest.approx(sims[mask][order].tolist(), abs=1e-5)
        of = dict(zip(rids.tolist(), sims.tolist(), strict=True))
        assert [of[r] for r, _ in found] == pytest.approx([s for _, s in found], abs=1e-5)
        assert len({r for r, _ in found}) == len(found)
        assert all(keep is None or r in set(keep.tolist()) for r, _ in found)


class _HeldMerges:
    """Holds every merge's child before it hands its graph back, until `go` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from cis.index import graph_build

        self.building, self.go = threading.Event(), threading.Event()
        finish = graph_build.Build.finish

        def held_finish(build: graph_build.Build) -> bytes:
            self.building.set()
            assert self.go.wait(60)
            return finish(build)

        monkeypatch.setattr(graph_build.Build, "finish", held_finish)


def test_searches_and_edits_go_on_while_a_merge_is_built_and_edits_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Meanwhile searches see everything and edits land at once; after the switch, what
    they changed holds."""
    held = _HeldMerges(monkeypatch)
    rng = np.random.default_rng(11)
    data = _unit(rng, 400, 16)
    index = VectorIndex(16, ann_threshold=100)
    index.upsert(np.arange(1, 201), data[:200])
    try:
        assert held.building.wait(60)
        with ThreadPoolExecutor(1) as pool:  # not on this thread, so a wait would show
            edits = pool.submit(
                lambda: (
                    index.upsert(np.arange(201, 401), data[200:]),
                    index.remove([1, 2, 3]),
                    index.upsert(np.array([4]), data[399:400]),
                )
            )
            edits.result(timeout=30)
        assert index.search(data[250], 1)[0][0] == 251
        assert len(index) == 397
    finally:
        held.go.set()
    assert index.wait_built(60) and index.pending == 0 and index.uses_ann
    found, vectors = index.vectors(list(range(1, 401)))
    assert found == list(range(4, 401))
    assert float(vectors[0] @ data[399]) == pytest.approx(1.0, abs=1e-2)  # the new vector
    assert {r for r, _ in index.search(data[0], 5)}.isdisjoint({1, 2, 3})


@pytest.mark.parametrize("removed", [300, 5000])  # past what a search looks past: a scan
def test_rows_removed_from_the_graph_are_never_answered_before_the_next_merge(
    monkeypatch: pytest.MonkeyPatch, removed: int
) -> None:
    rng = np.random.default_rng(15)
    data = _clustered(rng, 6000, 8)
    index = VectorIndex(8, ann_threshold=1000)
    index.upsert(np.arange(1, 6001), data)
    assert index.wait_built(60) and index.uses_ann
    held = _HeldMerges(monkeypatch)
    try:
        index.remove(list(range(1, removed + 1)))
        left = np.arange(removed + 1, 6001)
        assert len(index) == len(left)
        for q in data[:20]:
            got = [r for r, _ in index.search(q, 10)]
            assert got and min(got) > removed
            allowed = left[::7]
            hits = index.search(q, 10, allowed)
            assert set(r for r, _ in hits) <= set(allowed.tolist())
            best = np.sort(data[allowed - 1] @ q)[::-1][:10]  # the graph keeps bf16 or f16
            assert [s for _, s in hits] == pytest.approx(best.tolist(), abs=1e-2)
    finally:
        held.go.set()
    assert index.wait_built(60) and len(index) == len(left)


def test_a_small_backlog_is_merged_once_edits_are_quiet() -> None:
    rng = np.random.default_rng(16)
    data = _unit(rng, 305, 16)
    index = VectorIndex(16, ann_threshold=100, quiet_s=0.05)
    index.upsert(np.arange(1, 301), data[:300])
    assert index.wait_built(60) and index.pending == 0
    index.upsert(np.arange(301, 306), data[300:])  # far fewer than MERGE_MIN
    assert index.pending == 5
    deadline = time.monotonic() + 60
    while index.pending and time.monotonic() < deadline:  # no wait_built: it would hurry
        time.sleep(0.01)
    assert index.pending == 0 and index.search(data[302], 1)[0][0] == 303


def test_a_merge_that_cannot_run_leaves_every_vector_searchable_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cis.index import graph_build, vectors

    python = graph_build.sys.executable
    monkeypatch.setattr(graph_build.sys, "executable", "/nonexistent/python")
    monkeypatch.setattr(vectors, "RETRY_FIRST_S", 0.05)
    rng = np.random.default_rng(13)
    data = _unit(rng, 400, 16)
    index = VectorIndex(16, ann_threshold=100)
    index.upsert(np.arange(1, 301), data[:300])
    assert index.wait_built(60)
    assert not index.uses_ann and index.pending == 300
    assert "vector graph not extended" in caplog.text
    assert [index.search(data[i], 1)[0][0] for i in (0, 299)] == [1, 300]
    monkeypatch.setattr(graph_build.sys, "executable", python)  # the trouble passes
    deadline, rid = time.monotonic() + 60, 300
    while not index.uses_ann and time.monotonic() < deadline:  # an edit after the backoff
        rid += 1
        index.upsert(np.array([rid]), data[[rid % len(data)]])
        assert index.wait_built(60)
    assert index.uses_ann and index.pending == 0 and len(index) == rid


def test_the_graph_builder_takes_a_base_less_its_drops_plus_what_it_is_sent() -> None:
    from usearch.index import Index

    from cis.index import graph_build
    from cis.index.vectors import new_ann

    rng = np.random.default_rng(14)
    data = _unit(rng, 300, 16)
    base = new_ann(16)
    base.add(np.arange(1, 201, dtype=np.uint64), data[:200])
    build = graph_build.Build(16, base.save(), np.array([5, 6], dtype=np.int64))
    build.send(np.arange(201, 251), data[200:250])
    build.send(np.arange(251, 301), data[250:])
    graph = Index.restore(build.finish())
    assert graph is not None
    assert sorted(np.asarray(graph.keys).tolist()) == [r for r in range(1, 301) if r not in (5, 6)]
    wrong = graph_build.Build(16, None, np.empty(0, dtype=np.int64))
    try:
        with pytest.raises(ValueError):
            wrong.send(np.arange(3), data[:2])  # three keys, two rows
    finally:
        wrong.close()


def test_a_graph_saved_in_float16_restores_and_grows_in_float16() -> None:
    """Snapshots made before the graph held bfloat16 stay usable as they are."""
    from usearch.index import Index, ScalarKind

    rng = np.random.default_rng(12)
    data = _unit(rng, 300, 32)
    old = Index(ndim=32, metric="ip", dtype="f16", connectivity=20, expansion_add=48)
    old.add(np.arange(1, 201, dtype=np.uint64), data[:200])
    index = VectorIndex(32, ann_threshold=100)
    index.restore(old.save())
    index.upsert(np.arange(201, 301), data[200:])
    assert index.wait_built(60) and index.pending == 0
    assert [index.search(data[i], 1)[0][0] for i in (5, 250)] == [6, 251]
    blob = index.snapshot()
    assert blob is not None
    assert Index.metadata(blob)["kind_scalar"] == ScalarKind.F16
    index.remove(list(range(1, 251)))  # so many gone that the graph is packed anew
    assert index.wait_built(60) and len(index) == 50
    assert index.search(data[260], 1)[0][0] == 261
    blob = index.snapshot()
    assert blob is not None
    assert Index.metadata(blob)["kind_scalar"] == ScalarKind.F16


def test_a_snapshot_with_many_removed_rows_is_refused_not_read() -> None:
    """usearch 2.23 reads such a graph past its memory (graph_build.too_holey)."""
    from cis.index.vectors import new_ann

    rng = np.random.default_rng(17)
    old = new_ann(8)
    old.add(np.arange(1, 1001, dtype=np.uint64), _unit(rng, 1000))
    old.remove(np.arange(1, 701, dtype=np.uint64))
    index = VectorIndex(8)
    with pytest.raises(ValueError, match="removed rows"):
        index.restore(old.save())
    assert len(index) == 0 and not index.uses_ann


def test_close_during_a_merge_stops_its_child_and_keeps_what_the_index_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psutil

    held = _HeldMerges(monkeypatch)
    rng = np.random.default_rng(18)
    data = _unit(rng, 300, 16)
    index = VectorIndex(16, ann_threshold=100)
    index.upsert(np.arange(1, 301), data)
    assert held.building.wait(60)
    children = psutil.Process().children()
    assert any("cis.index.graph_build" in " ".join(c.cmdline()) for c in children)
    closing = threading.Thread(target=index.close)
    closing.start()
    for child in children:  # killed by close, not by the merge's own end
        assert child.wait(30) is not None or not child.is_running()
    held.go.set()
    closing.join(60)
    assert not closing.is_alive() and not psutil.Process().children()
    assert not index.uses_ann and index.pending == 300  # nothing lost: scanned exactly
    assert index.search(data[7], 1)[0][0] == 8


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "del", "merge"]), st.integers(1, 80), st.integers(1, 40)),
        max_size=10,
    )
)
def test_the_graph_and_what_waits_answer_as_one_after_edits_and_merges(
    ops: list[tuple[str, int, int]],
) -> None:
    """Any edits, with merges between some of them: the index holds what a dict would."""
    index = VectorIndex(8, ann_threshold=20)
    model: dict[int, np.ndarray] = {}
    for step, (op, lo, count) in enumerate(ops):
        rids = np.arange(lo, lo + count)
        if op == "put":
            vectors = _unit(np.random.default_rng(step), count)
            index.upsert(rids, vectors)
            model.update(zip(rids.tolist(), vectors, strict=True))
        elif op == "del":
            index.remove(rids.tolist())
            for rid in rids.tolist():
                model.pop(rid, None)
        else:
            assert index.wait_built(60)
        assert len(index) == len(model)
        found, vectors = index.vectors(list(range(1, 121)))
        assert sorted(found) == sorted(model)
        for rid, vector in zip(found, vectors, strict=True):  # the graph keeps bf16 or f16
            assert np.abs(vector - model[rid]).max() < 1e-2
    assert index.wait_built(60)
    assert index.pending == 0 or len(index) < 20  # under the threshold no graph is built
    index.close()


def test_dropping_the_first_blocks_lets_them_go_and_keeps_the_rest() -> None:
    """What a merge sent is the first blocks, in slot order: they go without a copy."""
    from cis.index import exact

    rows = exact.ExactRows(4)
    n = 2 * exact.BLOCK + 300
    rids = np.random.default_rng(19).permutation(np.arange(1, n + 1))
    vectors = np.random.default_rng(20).normal(size=(n, 4)).astype(np.float32)
    rows.put(rids, vectors)
    kept_block = rows.blocks[2]
    rows.drop_many(rids[: 2 * exact.BLOCK][::-1].copy())  # any order
    assert len(rows) == 300 and rows.blocks[0] is kept_block  # moved, not copied
    found, got = rows.get(rids[2 * exact.BLOCK :].tolist())
    assert found == rids[2 * exact.BLOCK :].tolist()
    assert np.array_equal(got, vectors[2 * exact.BLOCK :])
    query = np.ones(4, dtype=np.float32)
    sims = vectors[2 * exact.BLOCK :] @ query
    assert [r for r, _ in rows.best(query, 3)] == rids[2 * exact.BLOCK :][
        np.argsort(-sims, kind="stable")[:3]
    ].tolist()
    rows.put(np.array([n + 1]), vectors[:1])  # and it grows on as before
    assert len(rows) == 301 and rows.get([n + 1])[0] == [n + 1]
