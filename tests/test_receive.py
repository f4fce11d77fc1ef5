"""Ops from peers through the one apply path: replicas of real node files converge
whatever the order of writes and syncs; refused ops change nothing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cis import Node
from cis.clock import Clock, now_ms
from cis.memory.apply import stored_state
from cis.memory.rows import to_state
from cis.net import oplog
from cis.net.merge import edit


def _pull(into: Node, source: Node) -> int:
    """What `into` lacks of `source`'s log, received by `into`; the ops it took."""
    signed = source.memory.log_since(into.memory.log_vector(), limit=10_000)
    received = into.memory.receive(signed)
    assert received.refused == {}
    return received.ops


def _nodes(tmp_path: Path, count: int, tag: str = "") -> list[Node]:
    return [Node.open(tmp_path / f"n{tag}{i}", background=False) for i in range(count)]


def test_public_memory_reaches_a_peer_and_private_memory_never(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        shared = a.memory.add("Billing runs on PostgreSQL 16", domain="public", tags=["db"])
        a.memory.add("PRIVATE diary entry")
        assert _pull(b, a) == 1
        got = b.memory.get(shared.id)
        assert got is not None and (got.text, got.tags, got.origin) == (
            shared.text,
            ("db",),
            a.identity.did,
        )
        assert b.memory.search("PostgreSQL", mode="text")[0].memory.id == shared.id
        assert [m.text for m in b.memory.list()] == [shared.text]
        assert all(b"PRIVATE" not in body for body, _ in a.memory.log_since({}))
        assert a.memory.public_digest() == b.memory.public_digest()
        assert _pull(b, a) == 0  # nothing new: nothing moves
    finally:
        a.close(), b.close()


def test_concurrent_edits_end_the_same_everywhere_and_the_loser_stays_in_history(
    tmp_path: Path,
) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        a.memory.set("editor", "Alice uses vim", domain="public")
        b.memory.set("editor", "Alice uses helix", domain="public")  # not synced yet
        _pull(b, a), _pull(a, b)
        assert a.memory.public_digest() == b.memory.public_digest()
        assert len(a.memory.list()) == len(b.memory.list()) == 1  # one key, one memory
        on_a, on_b = a.memory.get("editor"), b.memory.get("editor")
        assert on_a is not None and on_b is not None
        assert msgspec.structs.replace(on_a, version=0) == msgspec.structs.replace(on_b, version=0)
        for node in (a, b):
            texts = {(h.text, h.origin) for h in node.memory.history("editor")}
            assert ("Alice uses vim", a.identity.did) in texts
            assert ("Alice uses helix", b.identity.did) in texts
    finally:
        a.close(), b.close()


def test_delete_edit_and_retraction_travel(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        gone = a.memory.add("to be deleted", domain="public")
        hidden = a.memory.set("plan", "shared plan", domain="public")
        _pull(b, a)
        a.memory.delete(gone.id)
        a.memory.set("plan", "the plan, now private", domain="private")
        _pull(b, a)
        assert b.memory.get(gone.id) is None and b.memory.get("plan") is None
        assert b.memory.list() == []
        assert b.memory.search("private plan", mode="text") == []
        a.memory.set("plan", "public again", domain="public")
        _pull(b, a)
        assert b.memory.get("plan").text == "public again"  # type: ignore[union-attr]
        assert hidden.id == b.memory.get("plan").id  # type: ignore[union-attr]
    finally:
        a.close(), b.close()


def test_a_peers_public_memory_does_not_pull_out_a_private_one_of_the_same_key(
    tmp_path: Path,
) -> None:
    (b,) = _nodes(tmp_path, 1)
    later = Clock(lambda: now_ms() + 1000)  # a's write is the later one, not a tie by origin
    a = Node.open(tmp_path / "later", clock=later, background=False)
    try:
        b.memory.set("token-note", "B's PRIVATE note", metadata={"secret": 1})
        a.memory.set("token-note", "A's public note", domain="public")  # later: it wins
        _pull(b, a)
        on_b = b.memory.get("token-note")
        assert on_b is not None and (on_b.text, on_b.domain) == ("A's public note", "public")
        assert on_b.metadata == {}
        b.memory.update("token-note", tags=["seen"])  # b's next public change travels
        _pull(a, b)
        assert all(b"PRIVATE" not in body for body, _ in b.memory.log_since({}))
        assert "B's PRIVATE note" in {h.text for h in b.memory.history("token-note")}
    finally:
        a.close(), b.close()


def test_a_forged_op_a_broken_chain_and_a_clock_far_ahead_are_refused(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        a.memory.add("genuine", domain="public")
        signed = a.memory.log_since({})
        op = oplog.decode(signed[0][0])
        forged_state = edit(op.state, op.hlc, op.origin, {"text": "forged"})
        forged = oplog.Op(op.origin, op.seq, op.hlc, op.prev, forged_state)
        received = b.memory.receive([(oplog.encode(forged), signed[0][1])])
        assert "signature" in received.refused[a.identity.did]
        a.memory.add("second", domain="public")
        later = a.memory.log_since({})[1:]  # without the first: a gap
        assert "gap" in b.memory.receive(later).refused[a.identity.did]
        assert b.memory.list() == [] and b.memory.log_vector() == {}
        with Node.open(
            tmp_path / "ahead", clock=Clock(lambda: now_ms() + 3_600_000), background=False
        ) as c:
            c.memory.add("from the future", domain="public")
            assert "ahead" in b.memory.receive(c.memory.log_since({})).refused[c.identity.did]
        assert b.memory.list() == []
    finally:
        a.close(), b.close()


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"domain": "private", "text": "PRIVATE leak"}, "private content"),
        ({"category": "no-such-category"}, "category"),
        ({"text": ""}, "text"),
    ],
)
def test_ops_a_node_could_not_have_written_are_refused(
    tmp_path: Path, values: dict[str, object], why: str
) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        a.memory.add("x", domain="public")
        body, _ = a.memory.log_since({})[0]
        op = oplog.decode(body)
        state = edit(op.state, op.hlc + 1, op.origin, values)
        bad = oplog.Op(op.origin, op.seq, op.hlc, op.prev, state)
        signature = oplog.sign(a.identity, bad)  # signed by its origin: only the content is bad
        received = b.memory.receive([(oplog.encode(bad), signature)])
        assert why in received.refused[a.identity.did]
        assert b.memory.list() == [] and b.memory.log_vector() == {}
    finally:
        a.close(), b.close()


writes = st.lists(
    st.tuples(
        st.integers(0, 2),  # the node
        st.sampled_from(["add", "set", "delete", "sync"]),
        st.integers(0, 3),  # a key, or the node to sync from
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(writes)
def test_three_replicas_converge_and_lose_no_acknowledged_write(
    tmp_path: Path, steps: list[tuple[int, str, int]]
) -> None:
    nodes = _nodes(tmp_path, 3, tag=str(abs(hash(str(steps)))))
    acked: list[tuple[str, str]] = []  # (id, text) of every write that returned
    try:
        for n, (who, kind, arg) in enumerate(steps):
            node = nodes[who]
            if kind == "sync":
                _pull(node, nodes[arg % 3])
            elif kind == "add":
                m = node.memory.add(f"fact {n} from {who}", domain="public")
                acked.append((m.id, m.text))
            elif kind == "set":
                m = node.memory.set(f"k{arg}", f"value {n} from {who}", domain="public")
                acked.append((m.id, m.text))
            else:
                live = node.memory.list(domain="public")
                if live:
                    node.memory.delete(live[arg % len(live)].id)
        for _ in range(2):  # everyone pulls from everyone
            for x in nodes:
                for y in nodes:
                    if x is not y:
                        _pull(x, y)
        digests = {node.memory.public_digest() for node in nodes}
        assert len(digests) == 1
        for node in nodes:
            for memory_id, text in acked:
                seen = {h.text for h in node.memory.history(memory_id)}
                assert text in seen  # present, or in history as a loser or before a delete
    finally:
        for node in nodes:
            node.close()


def test_search_ranks_the_same_on_replicas_that_stored_in_another_order(tmp_path: Path) -> None:
    a, b, c = _nodes(tmp_path, 3)
    try:
        for i in range(12):  # a writes the even notes, c the odd ones, their times interleaved
            text = f"note {i}: the build server {'fails' if i % 3 else 'passes'}"
            writer = c if i % 2 else a
            writer.memory.add(text, domain="public", event_at=1_700_000_000_000 + i * 1000)
        _pull(a, c)  # a holds its own rows first, then c's
        _pull(b, c), _pull(b, a)  # b holds c's first, then a's
        a.memory.flush(), b.memory.flush()
        for query in ("does the build server fail", "note 3", "passes"):
            on_a = [(h.memory.id, h.score, h.context_score) for h in a.memory.search(query)]
            on_b = [(h.memory.id, h.score, h.context_score) for h in b.memory.search(query)]
            assert on_a == on_b and on_a
    finally:
        a.close(), b.close(), c.close()


def test_a_denied_origins_ops_are_refused_when_another_peer_passes_them_on(
    tmp_path: Path,
) -> None:
    a, b, c = _nodes(tmp_path, 3)
    try:
        a.memory.add("from the lost laptop", domain="public")
        _pull(b, a)  # b still trusts a
        c.network.judge(a.identity.did, "deny", "lost")
        received = c.memory.receive(b.memory.log_since({}), c.network.denied)
        assert "denied" in received.refused[a.identity.did]
        assert c.memory.list() == []
    finally:
        a.close(), b.close(), c.close()


def test_vectors_travel_with_their_ops_and_serve_only_their_own_text(tmp_path: Path) -> None:
    import numpy as np

    a, b = _nodes(tmp_path, 2)
    try:
        own = np.random.default_rng(5).normal(size=384).astype(np.float32)
        a.memory.add("a vector of the caller's own", domain="public", embedding=own)
        embedded = a.memory.add("embedded on a by its model", domain="public")
        a.memory.flush()
        signed = a.memory.log_since({})
        ids = [oplog.decode(body).state.id for body, _ in signed]
        shared = a.memory.vectors_of(ids)
        assert {model for _, _, model, _ in shared} == {"supplied", a.memory.embedder.model_id}
        broken = [(i, h, m, blob[:100]) for i, h, m, blob in shared if i == embedded.id]
        assert b.memory.receive(signed, vectors=broken).refused == {}
        assert b.memory.pending() == 2  # no usable vector came: b embeds both
        assert b.memory.receive(a.memory.log_since({}), vectors=shared).ops == 0
        with Node.open(tmp_path / "c", background=False) as c:
            c.memory.receive(signed, vectors=shared)
            assert c.memory.pending() == 0 and c.status().vectors == 2  # nothing to embed
            hits = c.memory.search("embedded on a by its model", mode="vector")
            assert hits[0].memory.id == embedded.id
            late = (embedded.id, b"\x00" * 16, shared[0][2], shared[0][3])  # of another text
            with Node.open(tmp_path / "d", background=False) as d:
                d.memory.receive(signed, vectors=[late])
                assert d.memory.pending() == 2
    finally:
        a.close(), b.close()


def test_a_thread_travels_and_a_state_without_one_names_no_thread_register(
    tmp_path: Path,
) -> None:
    """A memory's thread reaches the peer and can be renamed there; a memory without one
    carries no `thread` register, so a peer of an older CIS still takes it."""
    a, b = _nodes(tmp_path, 2)
    try:
        named = a.memory.add("we sail at dawn", domain="public", thread="boat trip")
        plain = a.memory.add("the sails are new", domain="public")
        _pull(b, a)
        assert b.memory.get(named.id).thread == "boat trip"
        assert b.memory.get(plain.id).thread is None
        with a.db.read() as conn:
            row = stored_state(conn, plain.id)
        assert row is not None and "thread" not in to_state(row).registers
        a.memory.set("trip", "we leave on Friday", domain="public", thread="boat trip")
        _pull(b, a)
        b.memory.set("trip", "we leave on Friday", thread="sailing")
        _pull(a, b)
        assert a.memory.get("trip").thread == "sailing"
    finally:
        a.close(), b.close()
