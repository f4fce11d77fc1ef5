"""This node's log of public changes: ops, hash-chained per origin, signed per transaction.

An op carries a memory's whole replicated state after a change (every register with its
own stamp), so any op can be merged alone, in any order. Each op names the hash of its
origin's previous op; the last op of a transaction carries the origin's signature over
its hash, which covers the chain before it. A gap, a fork or a forged op is visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import apsw
import msgspec

from .identity import Identity, verify
from .merge import State

GENESIS = bytes(32)  # the `prev` of an origin's first op
_encode = msgspec.msgpack.Encoder(order="deterministic")


class Op(msgspec.Struct, frozen=True, array_like=True):
    origin: str
    seq: int
    hlc: int
    prev: bytes
    state: State

    def digest(self) -> bytes:
        return hashlib.sha256(b"cis-op\x00" + _encode.encode(self)).digest()


_decode = msgspec.msgpack.Decoder(Op)


def encode(op: Op) -> bytes:
    return _encode.encode(op)


def decode(body: bytes) -> Op:
    return _decode.decode(body)


def _signed(digest: bytes) -> bytes:
    return b"cis-ops\x00" + digest


def head(conn: apsw.Connection, origin: str) -> tuple[int, bytes]:
    """The seq and hash of the latest op of `origin` held here, (0, GENESIS) if none."""
    rows: list[tuple[int, bytes]] = conn.execute(  # type: ignore[assignment]
        "SELECT seq, hash FROM ops WHERE origin = ? ORDER BY seq DESC LIMIT 1", (origin,)
    ).fetchall()
    return rows[0] if rows else (0, GENESIS)


def append(
    conn: apsw.Connection, identity: Identity, hlc: int, states: Sequence[State]
) -> list[Op]:
    """Inside the writing transaction: log `states` as ops of this node, chained to its
    last op, the last of them signed."""
    seq, prev = head(conn, identity.did)
    ops, rows = [], []
    for number, state in enumerate(states, 1):
        op = Op(origin=identity.did, seq=seq + number, hlc=hlc, prev=prev, state=state)
        prev = op.digest()
        signature = identity.sign(_signed(prev)) if number == len(states) else None
        ops.append(op)
        rows.append((op.origin, op.seq, hlc, state.id, encode(op), prev, signature))
    conn.executemany("INSERT INTO ops VALUES (?,?,?,?,?,?,?)", rows)
    return ops


def check_signature(op: Op, signature: bytes) -> bool:
    """Whether `signature` is the origin's over the chain up to `op`."""
    return verify(op.origin, signature, _signed(op.digest()))
