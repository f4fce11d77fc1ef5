"""Quarantine: a sender's verified ops held apart, applied only when approved, dropped
for good when rejected; nothing held is searchable or listed before approval."""

from __future__ import annotations

from pathlib import Path

import pytest

from cis import Node
from cis.errors import InvalidInput, NotFound
from cis.net.network import Standing


def _nodes(tmp_path: Path, count: int) -> list[Node]:
    return [Node.open(tmp_path / f"q{i}", background=False) for i in range(count)]


def _send(into: Node, source: Node) -> int:
    """What `into` tells `source` it lacks, sent by `source` and held by `into`."""
    sender = source.identity.did
    signed = source.memory.log_since(into.memory.log_vector(sender), limit=10_000)
    received = into.memory.hold(signed, sender, into.network.denied)
    assert received.refused == {} and received.ops == 0
    return received.held


def test_the_mode_and_the_verdict_decide_who_is_held(tmp_path: Path) -> None:
    (a,) = _nodes(tmp_path, 1)
    try:
        net = a.network
        stranger, friend, suspect = (Node.open(tmp_path / n, background=False) for n in "xyz")
        try:
            s, f, q = stranger.identity.did, friend.identity.did, suspect.identity.did
            net.judge(f, "allow")
            net.judge(q, "quarantine", "new laptop")
            assert net.standing(s) == Standing(False, False)  # whitelist: strangers out
            assert net.standing(q) == Standing(True, True)  # by name, in any mode
            net.set_mode("quarantine")
            assert net.standing(s) == Standing(True, True)
            assert net.standing(f) == Standing(True, False)  # allowed: trusted
            net.set_mode("solitary")
            assert net.standing(q) == Standing(False, False)
            net.set_mode("open")
            net.judge(s, "deny")
            assert net.standing(s) == Standing(False, False)  # deny wins
        finally:
            stranger.close(), friend.close(), suspect.close()
    finally:
        a.close()


def test_held_ops_wait_unapplied_until_approved(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        for i in range(3):
            b.memory.add(f"held fact number {i} about zebras", domain="public")
        assert _send(a, b) == 3
        assert a.memory.list() == [] and a.memory.search("zebras", mode="text") == []
        (batch,) = a.network.review()
        assert (batch.sender, batch.origin, batch.first_seq, batch.last_seq) == (
            b.identity.did,
            b.identity.did,
            1,
            3,
        )
        assert batch.memories == 3 and "zebras" in batch.preview
        assert _send(a, b) == 0  # held ops count as seen: not sent again
        done = a.network.approve([batch.id])
        assert [d.id for d in done.approved] == [batch.id] and done.received.ops == 3
        assert len(a.memory.search("zebras", mode="text")) == 3
        assert a.memory.public_digest() == b.memory.public_digest()
        assert a.network.review() == []
        events = [e.event for e in a.network.audit_log()]
        assert "approved" in events
    finally:
        a.close(), b.close()


def test_batches_of_one_origin_are_approved_in_chain_order(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        b.memory.add("first batch", domain="public")
        _send(a, b)
        b.memory.add("second batch", domain="public")
        _send(a, b)
        first, second = a.network.review()
        assert second.first_seq == first.last_seq + 1
        with pytest.raises(InvalidInput, match="approve that first"):
            a.network.approve([second.id])
        with pytest.raises(NotFound):
            a.network.approve([999])
        done = a.network.approve(None)
        assert len(done.approved) == 2 and done.received.ops == 2
        assert sorted(m.text for m in a.memory.list()) == ["first batch", "second batch"]
    finally:
        a.close(), b.close()


def test_a_rejected_batch_and_the_ones_after_it_are_not_taken_again(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        b.memory.add("spam one", domain="public")
        _send(a, b)
        b.memory.add("spam two", domain="public")
        _send(a, b)
        first, _ = a.network.review()
        gone = a.network.reject([first.id])
        assert len(gone) == 2 and a.network.review() == []
        assert _send(a, b) == 0  # rejected: not asked for again
        b.memory.add("spam three", domain="public")  # builds on the rejected ops
        signed = b.memory.log_since(a.memory.log_vector(b.identity.did))
        received = a.memory.hold(signed, b.identity.did, a.network.denied)
        assert received.held == 0 and "rejected" in received.refused[b.identity.did]
        assert a.memory.list() == []
        assert "rejected" in [e.event for e in a.network.audit_log()]
    finally:
        a.close(), b.close()


def test_held_ops_a_trusted_peer_delivers_meanwhile_leave_the_quarantine(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        b.memory.add("came two ways", domain="public")
        _send(a, b)
        assert len(a.network.review()) == 1
        received = a.memory.receive(b.memory.log_since(a.memory.log_vector()))
        assert received.ops == 1
        assert a.network.review() == []
    finally:
        a.close(), b.close()


def test_held_ops_are_verified_before_they_are_kept(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path, 2)
    try:
        b.memory.add("a fact to forge", domain="public")
        ((body, signature),) = b.memory.log_since({})
        assert signature is not None
        forged = body.replace(b"a fact to forge", b"a fact FORGED!!")
        received = a.memory.hold([(forged, signature)], b.identity.did, a.network.denied)
        assert received.held == 0 and "signature" in received.refused[b.identity.did]
        assert a.network.review() == []
    finally:
        a.close(), b.close()
