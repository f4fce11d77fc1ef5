"""The thread order (cis.memory.order): runs cut from it are the runs SQL reads, and a
search uses it only at the state it was read at."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cis import Node
from cis.memory.context import Known, _read_runs, threads
from cis.memory.order import read_order

SCOPES = ("project/a", "project/a", "project/b", "session/s")
THREADS = (None, None, None, "t1")

memories = st.lists(
    st.tuples(
        st.sampled_from(SCOPES),
        st.sampled_from(THREADS),
        st.integers(0, 40),  # event time, minutes; times tie
        st.booleans(),  # with a vector
        st.booleans(),  # deleted afterwards
    ),
    min_size=30,  # threads longer than a run
    max_size=120,
)


@settings(max_examples=25, deadline=None)
@given(rows=memories, seed=st.integers(0, 2**16))
def test_runs_cut_from_the_order_are_the_runs_sql_reads(
    rows: list[tuple[str, str | None, int, bool, bool]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp, Node.open(Path(tmp), background=False) as node:
        added = node.memory.add_many(
            {
                "text": f"note {n}",
                "scope": scope,
                "thread": thread,
                "event_at": 1_700_000_000_000 + minutes * 60_000,
                **({"embedding": rng.normal(size=384).astype(np.float32)} if vector else {}),
            }
            for n, (scope, thread, minutes, vector, _) in enumerate(rows)
        )
        for memory, (*_, deleted) in zip(added, rows, strict=True):
            if deleted:
                node.memory.delete(memory.id, scope=memory.scope)
        node.memory.fresh.refresh()
        index = node.memory.index
        with node.db.read() as conn:
            rids = [int(r) for (r,) in conn.execute("SELECT rid FROM memories")]
            order = read_order(conn, index)
            assert order is not None
            cut = order.runs([*rids, max(rids) + 1])
            read = _read_runs(conn, index, rids)
            live = {int(r) for (r,) in conn.execute("SELECT rid FROM memories WHERE deleted = 0")}
            assert set(cut) == live  # a deleted or unknown rowid is not in the order
            assert {r: read[r] for r in live} == cut
            asked = rng.permutation(rids)[: max(1, len(rids) // 2)].tolist()
            plain, quick = threads(conn, index, asked), threads(conn, index, asked, None, order)
            assert plain.rids == quick.rids
            assert all(
                np.array_equal(a, b) for a, b in zip(plain.around, quick.around, strict=True)
            )
            assert quick.read == len(set(asked) - live)  # only the dead come from SQL


def test_a_search_reads_the_order_once_its_runs_cost_as_much(node: Node) -> None:
    """Searches at one state read runs from SQL until they have cost what the order does;
    it is then read in the background and used while the state holds, with the same hits
    as before; a new memory or an edit leaves it in use, less the runs around the
    changed one, and a removal whose run before is unknown leaves searches to SQL."""
    rng = np.random.default_rng(5)
    words = "river stone lamp garden winter letter violin harbour ladder copper".split()
    node.memory.add_many(
        {"text": " ".join(rng.choice(words, 4)), "embedding": rng.normal(size=384)}
        for _ in range(3000)
    )
    node.memory.flush()
    searcher = node.memory.searcher
    asked = [(" ".join(rng.choice(words, 3)), rng.normal(size=384)) for _ in range(80)]
    found = []
    for query, vector in asked:
        found.append([h.memory.id for h in node.memory.search(query, embedding=vector)])
        searcher.orders.wait()
        if searcher.orders.at(searcher.known) is not None:
            break
    assert searcher.orders.at(searcher.known) is not None, "the order was never read"
    assert len(found) > 2  # not at once: once some searches' runs cost as much
    node.memory.cache.clear()
    searcher.known = Known()  # so that every run is cut from the order
    again = [
        [h.memory.id for h in node.memory.search(query, embedding=vector)]
        for query, vector in asked[: len(found)]
    ]
    assert again == found

    node.memory.add("a new note about the violin", embedding=rng.normal(size=384))
    node.memory.search("violin", embedding=rng.normal(size=384))
    carried = searcher.orders.at(searcher.known)
    assert carried is not None and carried.touched
    index = node.memory.index
    with node.db.read() as conn:
        rids = [int(r) for (r,) in conn.execute("SELECT rid FROM memories")]
        (added,) = [r for r in rids if r not in carried.order.runs(rids)]
        assert added in carried.touched  # new: from SQL
        cut = carried.runs(rids)
        assert cut == _read_runs(conn, index, list(cut))
        assert not set(cut) & carried.touched
        (held,) = conn.execute("SELECT id FROM memories WHERE rid = ?", (min(cut),)).fetchall()
    node.memory.update(str(held[0]), "an edited note about the violin")  # its run in the order
    node.memory.search("violin", embedding=rng.normal(size=384))
    edited = searcher.orders.at(searcher.known)
    assert edited is not None and min(cut) in edited.touched
    with node.db.read() as conn:
        cut = edited.runs(rids)
        assert cut == _read_runs(conn, index, list(cut))
    gone = node.memory.add("a passing note", embedding=rng.normal(size=384))
    node.memory.delete(gone.id)  # between two searches: its run before is nowhere
    node.memory.search("violin", embedding=rng.normal(size=384))
    assert searcher.orders.at(searcher.known) is None


def test_an_order_that_cannot_be_read_leaves_searches_to_sql(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cis.memory import order as order_module

    def fail(*args: object, **kwargs: object) -> None:
        raise ValueError("no order today")

    monkeypatch.setattr(order_module, "read_order", fail)
    node.memory.add_many({"text": f"note {n}", "embedding": np.ones(384)} for n in range(20))
    node.memory.fresh.refresh()
    searcher = node.memory.searcher
    with node.db.read() as conn:
        searcher.known.at(conn, node.memory.index, node.memory.fresh.logged)
        searcher.orders.note_read(conn, searcher.known, 10**6)
    searcher.orders.wait()
    assert searcher.orders.at(searcher.known) is None
    assert "the thread order was not read: ValueError: no order today" in caplog.text
    hits = node.memory.search("note 7", embedding=np.ones(384))  # its threads from SQL
    assert "note 7" in [h.memory.text for h in hits]
