"""The node's identity, its clock and its signed log: what a write of public memory
leaves for peers, and that private memory leaves nothing."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from cis import InvalidInput, Node
from cis.clock import COUNTER_BITS, Clock, ClockAhead, wall_ms
from cis.memory.validate import keyed_id
from cis.net import oplog
from cis.net.identity import did_of, public_key, verify

FIXTURES = Path(__file__).parent / "fixtures"


def _ops(node: Node) -> list[tuple[oplog.Op, bytes | None]]:
    with node.db.read() as conn:
        rows = conn.execute("SELECT body, signature FROM ops ORDER BY origin, seq").fetchall()
    return [(oplog.decode(body), sig) for body, sig in rows]  # type: ignore[arg-type]


def test_a_node_has_a_did_key_that_signs(node: Node) -> None:
    did = node.identity.did
    assert did.startswith("did:key:z6Mk") and len(did) == 56
    assert did_of(node.identity.public) == did
    assert verify(did, node.identity.sign(b"hello"), b"hello")
    assert not verify(did, node.identity.sign(b"hello"), b"hellp")
    assert "PRIVATE" not in repr(node.identity) and did in repr(node.identity)
    for bad in ("did:web:example.com", "did:key:z0OIl", "did:key:z6Mk", 42):
        with pytest.raises(InvalidInput, match="did:key"):
            public_key(bad)  # type: ignore[arg-type]


def test_the_did_survives_reopening(data_dir: Path) -> None:
    with Node.open(data_dir) as first:
        did = first.identity.did
    with Node.open(data_dir) as again:
        assert again.identity.did == did


def test_public_writes_append_signed_chained_ops_private_ones_none(node: Node) -> None:
    node.memory.add("a private fact")
    assert _ops(node) == []
    node.memory.add_many([{"text": f"public {i}", "domain": "public"} for i in range(3)])
    ops = _ops(node)
    assert [op.seq for op, _ in ops] == [1, 2, 3]
    assert {op.origin for op, _ in ops} == {node.identity.did}
    assert ops[0][0].prev == oplog.GENESIS
    assert all(
        later.prev == earlier.digest() for (earlier, _), (later, _) in itertools.pairwise(ops)
    )
    assert [sig for _, sig in ops] == [None, None, None]  # signed when they travel
    node.memory.add("public 3", domain="public")
    node.memory.log_since({})
    ops = _ops(node)
    assert [sig is not None for _, sig in ops] == [False, False, False, True]  # one for all
    last, signature = ops[-1]
    assert oplog.check_signature(last, signature)  # type: ignore[arg-type]
    forged = oplog.Op(last.origin, last.seq, last.hlc, last.prev, ops[0][0].state)
    assert not oplog.check_signature(forged, signature)  # type: ignore[arg-type]


def _chained(ops: list[tuple[oplog.Op, bytes | None]]) -> bool:
    return [op.seq for op, _ in ops] == list(range(1, len(ops) + 1)) and all(
        later.prev == earlier.digest() for (earlier, _), (later, _) in itertools.pairwise(ops)
    )


def test_the_chain_stays_whole_when_another_process_writes_between(data_dir: Path) -> None:
    """A writer keeps its chain's head between its own transactions; a write by any other
    connection (another process on the same file) must make it look again."""
    with Node.open(data_dir) as one, Node.open(data_dir) as other:
        for n in range(3):
            one.memory.add(f"public from one {n}", domain="public")
            one.memory.add(f"private from one {n}")
            other.memory.add(f"public from other {n}", domain="public")
        ops = _ops(one)
    assert len(ops) == 6 and _chained(ops)


def test_making_a_memory_private_retracts_it_without_its_content(node: Node) -> None:
    m = node.memory.set("plan", "shared at first", domain="public", tags=["t"])
    node.memory.add("another public one", domain="public")
    node.memory.set("plan", "SECRET now", domain="private")
    ops = _ops(node)
    retract = ops[-1][0].state
    assert retract.id == m.id and set(retract.registers) == {"alive", "domain"}
    assert all(b"SECRET" not in oplog.encode(op) for op, _ in ops)
    node.memory.set("plan", "public again", domain="public")  # travels whole
    assert _ops(node)[-1][0].state.value("text") == "public again"


def test_every_memory_says_where_and_when_it_was_last_changed(node: Node) -> None:
    m = node.memory.add("first", domain="public")
    u = node.memory.update(m.id, "second")
    assert m.origin == u.origin == node.identity.did
    assert u.hlc > m.hlc and wall_ms(u.hlc) == u.updated_at
    history = node.memory.history(m.id)
    assert [(h.op, h.origin, h.hlc) for h in history] == [
        ("add", m.origin, m.hlc),
        ("update", u.origin, u.hlc),
    ]


def test_the_clock_never_goes_backwards_across_restarts(data_dir: Path) -> None:
    with Node.open(data_dir, clock=Clock(lambda: 5_000_000)) as first:
        a = first.memory.add("at five thousand seconds")
        b = first.memory.add("the same millisecond")
    assert b.hlc == a.hlc + 1  # the counter moves when the wall clock does not
    with Node.open(data_dir, clock=Clock(lambda: 1_000)) as late:  # a clock set back
        c = late.memory.add("after a restart")
    assert c.hlc > b.hlc


def test_a_remote_clock_far_ahead_is_refused() -> None:
    clock = Clock(lambda: 1_000_000)
    near = (1_000_000 + 60_000) << COUNTER_BITS
    assert clock.receive(5, near) == near
    with pytest.raises(ClockAhead, match="ahead"):
        clock.receive(5, (1_000_000 + 3_600_000) << COUNTER_BITS)


def test_a_node_of_schema_5_gets_its_identity_states_and_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    shutil.copytree(FIXTURES / "schema5", data_dir)
    with Node.open(data_dir, passphrase="fixture passphrase", background=False) as node:
        memories = {m.text: m for m in node.memory.list()}
        assert set(memories) == {
            "Billing runs on PostgreSQL 17",
            "Alice uses helix",
            "a private fact",
            "a public fact",
        }
        db = memories["Billing runs on PostgreSQL 17"]
        assert db.id == keyed_id("project/billing", "cfg/db")
        assert node.memory.get("cfg/db", scope="project/billing") == db
        assert memories["Alice uses helix"].id == keyed_id("global", "editor")
        assert {m.origin for m in memories.values()} == {node.identity.did}
        assert [h.op for h in node.memory.history(db.id)] == ["add", "update"]
        published = {op.state.id for op, _ in _ops(node)}
        assert published == {db.id, memories["a public fact"].id}  # live public memory
        again = node.memory.set("cfg/db", "Billing runs on PostgreSQL 18", scope="project/billing")
        assert again.id == db.id and again.version == db.version + 1
        assert node.memory.search("PostgreSQL", mode="text")[0].memory.id == db.id
