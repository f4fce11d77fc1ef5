"""What searches know of the data (cis.memory.context.Known) and the thread order across
writes: carried over, less what the changes touch, or dropped; in every case what is
held is what the database says at the state searched."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cis import Node
from cis.index.text import columns_of
from cis.memory.context import CARRIED_MAX, _read_runs

SCOPES = ("project/a", "project/a", "project/b", "session/s")
THREADS = (None, None, "t1")
WORDS = "river stone lamp garden winter letter violin harbour".split()

an_add = st.tuples(
    st.just("add"),
    st.sampled_from(SCOPES),
    st.sampled_from(THREADS),
    st.integers(0, 40),  # event time, minutes; times tie
    st.booleans(),  # with a vector (else the embedder gives one when flushed)
)
steps = st.lists(
    st.one_of(
        an_add,
        an_add,
        st.tuples(st.just("search"), st.integers(0, 2**16)),
        st.tuples(st.just("search"), st.integers(0, 2**16)),
        st.tuples(st.sampled_from(["edit", "delete", "flush"]), st.integers(0, 2**16)),
        # a memory moved in its scope: another time, another thread
        st.tuples(
            st.just("move"), st.integers(0, 2**16), st.integers(0, 40), st.sampled_from(THREADS)
        ),
    ),
    min_size=5,
    max_size=30,
)


def _held_as_stored(node: Node) -> int:
    """Check every run, terms and length known, and every run the thread order gives,
    against the database; how many runs are known."""
    searcher = node.memory.searcher
    index = node.memory.index
    searcher.orders.wait()
    with node.db.read() as conn:
        seen = searcher.known.at(conn, index, node.memory.fresh.logged)
        rids = [int(r) for (r,) in conn.execute("SELECT rid FROM memories")]
        carried = searcher.orders.at(searcher.known)
        if carried is not None:
            cut = carried.runs(rids)
            assert cut == _read_runs(conn, index, list(cut))
        runs = dict(seen.runs)
        if runs:
            assert _read_runs(conn, index, list(runs)) == runs
        if seen.columns:
            assert columns_of(conn, list(seen.columns)) == seen.columns
        known = seen.lengths.of(conn, rids)
        fresh = type(seen.lengths)().of(conn, rids)
        assert known.tolist() == fresh.tolist()
    return len(runs)


@settings(max_examples=20, deadline=None)
@given(first=st.lists(an_add, min_size=20, max_size=60), then=steps, seed=st.integers(0, 2**16))
def test_what_searches_know_is_what_the_database_says_after_any_writes(
    first: list[tuple[str, str, str | None, int, bool]],
    then: list[tuple[object, ...]],
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp, Node.open(Path(tmp), background=False) as node:
        added = []

        def add(scope: str, thread: str | None, minutes: int, vector: bool) -> None:
            added.append(
                node.memory.add(
                    " ".join(rng.choice(WORDS, 3)),
                    key=f"k{len(added)}",
                    scope=scope,
                    thread=thread,
                    event_at=1_700_000_000_000 + minutes * 60_000,
                    embedding=rng.normal(size=384).astype(np.float32) if vector else None,
                )
            )

        for _, scope, thread, minutes, vector in first:
            add(scope, thread, minutes, vector)
        node.memory.flush()
        kept = 0
        for step in [("search", 0), *then, ("search", 1)]:
            kind = step[0]
            if kind == "add":
                _, scope, thread, minutes, vector = step
                add(scope, thread, minutes, vector)  # type: ignore[arg-type]
            elif kind == "search":
                query = " ".join(rng.choice(WORDS, 2))
                node.memory.search(query, embedding=rng.normal(size=384), limit=10)
                kept = max(kept, _held_as_stored(node))
            elif kind == "flush":
                node.memory.flush()
            else:
                memory = added[int(step[1]) % len(added)]  # type: ignore[call-overload]
                if node.memory.get(memory.id, scope=memory.scope) is None:
                    continue
                if kind == "edit":
                    node.memory.update(memory.id, "lamp " * 3, scope=memory.scope)
                elif kind == "move":
                    _, _, minutes, thread = step
                    node.memory.set(
                        str(memory.key),
                        memory.text,
                        scope=memory.scope,
                        event_at=1_700_000_000_000 + int(minutes) * 60_000,  # type: ignore[call-overload]
                        thread=thread,
                    )
                else:
                    node.memory.delete(memory.id, scope=memory.scope)
        assert kept  # the searches held runs to check


def test_a_change_leaves_what_searches_know_of_the_rest(node: Node) -> None:
    """An add or an edit has the runs it touches, in its own thread, read again and keeps
    the others; a removal of a memory whose run before is not known drops everything."""
    rng = np.random.default_rng(3)
    for scope in ("project/a", "project/b"):
        node.memory.add_many(
            {
                "text": f"river stone {n}",
                "scope": scope,
                "event_at": 1_700_000_000_000 + n * 60_000,
                "embedding": rng.normal(size=384),
            }
            for n in range(12)
        )
    node.memory.search("river stone", embedding=rng.normal(size=384), limit=30)
    with node.db.read() as conn:
        seen = node.memory.searcher.known.at(conn, node.memory.index, node.memory.fresh.logged)
        before = dict(seen.runs)
    assert len(before) == 24
    last = 1_700_000_000_000 + 11 * 60_000
    node.memory.add(
        "river stone late", scope="project/b", event_at=last + 1, embedding=rng.normal(size=384)
    )
    # those of project/a kept, of project/b's the REACH before the new one read again,
    # and the new one's own run known
    assert _held_as_stored(node) == 25
    edited = node.memory.list(scope="project/a", limit=1)[0]
    node.memory.update(edited.id, "river lamp", scope="project/a")
    # the runs around the edited one read again, the others kept
    assert _held_as_stored(node) == 25
    unread = node.memory.add("garden winter", scope="project/c", embedding=rng.normal(size=384))
    node.memory.delete(unread.id, scope="project/c")  # its run before was never read
    assert _held_as_stored(node) == 0


def test_a_bulk_add_is_carried_over_a_change_a_memory(node: Node) -> None:
    """An add with its vector is one change, so a bulk add of CARRIED_MAX memories keeps
    what searches know (the new runs read at once); one change more drops it."""
    rng = np.random.default_rng(5)

    def bulk(scope: str, count: int) -> None:
        node.memory.add_many(
            {
                "text": f"harbour lamp {n}",
                "scope": scope,
                "event_at": 1_700_000_000_000 + n * 60_000,
                "embedding": rng.normal(size=384),
            }
            for n in range(count)
        )

    bulk("project/a", 12)
    node.memory.search("harbour lamp", embedding=rng.normal(size=384), limit=30)
    assert _held_as_stored(node) == 12
    bulk("project/b", CARRIED_MAX)
    assert _held_as_stored(node) == 12 + CARRIED_MAX
    bulk("project/c", CARRIED_MAX + 1)
    assert _held_as_stored(node) == 0
