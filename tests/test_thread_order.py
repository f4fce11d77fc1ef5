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
    as before, and after a write searches read from SQL again."""
    rng = np.random.default_rng(5)
    words = "river stone lamp garden winter letter violin harbour ladder copper".split()
    node.memory.add_many(
        {"text": " ".join(rng.choice(words, 4)), "embedding": rng.normal(size=384)}
        for _ in range(3000)
    )
    node.memory.flush()
    searcher = node.memory.searcher
    asked = [(" ".join(rng.choice(words, 3)), rng.normal(size=384)) for _ in range(80)]
    token = node.memory.fresh.scope_token(None)
    found = []
    for query, vector in asked:
        found.append([h.memory.id for h in node.memory.search(query, embedding=vector)])
        searcher.orders.wait()
        if searcher.orders.at(token) is not None:
            break
    assert searcher.orders.at(token) is not None, "the order was never read"
    assert len(found) > 2  # not at once: once some searches' runs cost as much
    node.memory.cache.clear()
    searcher.known = Known()  # so that every run is cut from the order
    again = [
        [h.memory.id for h in node.memory.search(query, embedding=vector)]
        for query, vector in asked[: len(found)]
    ]
    assert again == found
    node.memory.add("a new note about the violin")
    node.memory.fresh.refresh()
    assert searcher.orders.at(node.memory.fresh.scope_token(None)) is None


def test_an_order_read_across_a_write_is_not_kept(node: Node) -> None:
    node.memory.add_many({"text": f"note {n}", "embedding": np.ones(384)} for n in range(20))
    node.memory.fresh.refresh()
    token = node.memory.fresh.scope_token(None)
    node.memory.add("one more note")
    with node.db.read() as conn:
        node.memory.searcher.orders.note_read(conn, token, 10**6)  # asked at the old state
    node.memory.searcher.orders.wait()
    assert node.memory.searcher.orders.at(token) is None


def test_an_order_that_cannot_be_read_leaves_searches_to_sql(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cis.memory import order as order_module

    def fail(*args: object, **kwargs: object) -> None:
        raise ValueError("no order today")

    monkeypatch.setattr(order_module, "read_order", fail)
    node.memory.add_many({"text": f"note {n}", "embedding": np.ones(384)} for n in range(20))
    node.memory.fresh.refresh()
    token = node.memory.fresh.scope_token(None)
    orders = node.memory.searcher.orders
    with node.db.read() as conn:
        orders.note_read(conn, token, 10**6)
    orders.wait()
    assert orders.at(token) is None
    assert "the thread order was not read: ValueError: no order today" in caplog.text
    hits = node.memory.search("note 7", embedding=np.ones(384))  # its threads from SQL
    assert "note 7" in [h.memory.text for h in hits]
