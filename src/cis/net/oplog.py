"""This node's log of public changes: ops, hash-chained per origin, signed per transaction.

An op carries a memory's whole replicated state after a change (every register with its
own stamp), so any op can be merged alone, in any order. Each op names the hash of its
origin's previous op; before ops travel, the last of them (and every 32nd) gets the
origin's signature over its hash, which covers the chain before it. A gap, a fork or a
forged op is visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import apsw
import msgspec

from ..errors import SyncRefused
from .identity import Identity, verify
from .merge import State

GENESIS = bytes(32)  # the `prev` of an origin's first op
SIGN_EVERY = 32  # a long run of ops is signed every so many, so a frame can end there
_encode = msgspec.msgpack.Encoder(order="deterministic")


def _digest(body: bytes) -> bytes:
    return hashlib.sha256(b"cis-op\x00" + body).digest()


class Op(msgspec.Struct, frozen=True, array_like=True):
    origin: str
    seq: int
    hlc: int
    prev: bytes
    state: State

    def digest(self) -> bytes:
        return _digest(_encode.encode(self))


_decode = msgspec.msgpack.Decoder(Op)


def encode(op: Op) -> bytes:
    return _encode.encode(op)


def decode(body: bytes) -> Op:
    return _decode.decode(body)


def _signed(digest: bytes) -> bytes:
    return b"cis-ops\x00" + digest


def sign(identity: Identity, op: Op) -> bytes:
    """The signature that closes a run of ops at `op`: over its hash, so its chain."""
    return _sign_digest(identity, op.digest())


def _sign_digest(identity: Identity, digest: bytes) -> bytes:
    return identity.sign(_signed(digest))


def head(conn: apsw.Connection, origin: str) -> tuple[int, bytes]:
    """The seq and hash of the latest op of `origin` held here, (0, GENESIS) if none."""
    rows: list[tuple[int, bytes]] = conn.execute(  # type: ignore[assignment]
        "SELECT seq, hash FROM ops WHERE origin = ? ORDER BY seq DESC LIMIT 1", (origin,)
    ).fetchall()
    return rows[0] if rows else (0, GENESIS)


def append(
    conn: apsw.Connection,
    identity: Identity,
    last: tuple[int, bytes],
    hlc: int,
    states: Sequence[State],
) -> tuple[int, bytes]:
    """Inside the writing transaction: log `states` as ops of this node, chained to its
    `last` op (seq, hash: `head`); the new head. They are signed later, by `seal`,
    before they travel."""
    seq, prev = last
    rows = []
    for state in states:
        seq += 1
        body = encode(Op(origin=identity.did, seq=seq, hlc=hlc, prev=prev, state=state))
        prev = _digest(body)  # op.digest(), from the body already encoded
        rows.append((identity.did, seq, hlc, state.id, body, prev, None))
    conn.executemany("INSERT INTO ops VALUES (?,?,?,?,?,?,?)", rows)
    return seq, prev


def unsealed(conn: apsw.Connection, identity: Identity) -> bool:
    """Whether this node's last op waits for its signature."""
    rows = conn.execute(
        "SELECT signature IS NULL FROM ops WHERE origin = ? ORDER BY seq DESC LIMIT 1",
        (identity.did,),
    ).fetchall()
    return bool(rows and rows[0][0])


def seal(conn: apsw.Connection, identity: Identity) -> int:
    """Inside a write transaction: sign this node's ops that wait for it, the last and
    every SIGN_EVERY-th (so a frame can end there). A signature covers the chain before
    it, so the ops of every transaction since the last signature are signed together,
    off the path of the writes. How many signatures it made."""
    waiting: list[tuple[int, bytes]] = []
    for seq, digest, signed in conn.execute(
        "SELECT seq, hash, signature IS NOT NULL FROM ops WHERE origin = ? ORDER BY seq DESC",
        (identity.did,),
    ):
        if signed:
            break
        waiting.append((int(seq), bytes(digest)))
    chosen = [(s, d) for n, (s, d) in enumerate(waiting) if n == 0 or s % SIGN_EVERY == 0]
    conn.executemany(
        "UPDATE ops SET signature = ? WHERE origin = ? AND seq = ?",
        [(_sign_digest(identity, d), identity.did, s) for s, d in chosen],
    )
    return len(chosen)


def check_signature(op: Op, signature: bytes) -> bool:
    """Whether `signature` is the origin's over the chain up to `op`."""
    return verify(op.origin, signature, _signed(op.digest()))


# one index seek per origin (GROUP BY would read every op, bodies included)
_VECTOR = """
WITH RECURSIVE o(origin) AS (
    SELECT min(origin) FROM ops
    UNION ALL
    SELECT (SELECT min(origin) FROM ops WHERE origin > o.origin) FROM o WHERE origin IS NOT NULL
)
SELECT origin, (SELECT max(seq) FROM ops WHERE ops.origin = o.origin) FROM o
WHERE origin IS NOT NULL
"""


def vector(conn: apsw.Connection) -> dict[str, int]:
    """Per origin, the highest seq held here (chains are held without gaps)."""
    return {str(origin): int(seq) for origin, seq in conn.execute(_VECTOR)}


def heads(conn: apsw.Connection, vector: dict[str, int]) -> dict[str, bytes]:
    """The hash of each origin's op at its seq in `vector`, where this node holds it:
    as the chain is hashed, it stands for the whole chain up to there."""
    out = {}
    for origin, seq in vector.items():
        found = conn.execute(
            "SELECT hash FROM ops WHERE origin = ? AND seq = ?", (origin, seq)
        ).fetchall()
        if found:
            out[origin] = bytes(found[0][0])  # type: ignore[arg-type]
    return out


def forks(conn: apsw.Connection, vector: dict[str, int], theirs: dict[str, bytes]) -> list[str]:
    """The origins whose chain a peer holds otherwise than this node (its hash at a seq
    both hold differs): one origin signed two histories, as a node restored from an old
    backup that wrote on does. Neither side can take the other's ops past the fork."""
    mine = heads(conn, {origin: vector[origin] for origin in theirs if origin in vector})
    return [origin for origin, digest in theirs.items() if mine.get(origin, digest) != digest]


Signed = tuple[
    bytes, bytes | None
]  # an op's body as logged, and its signature if it ends a transaction


def since(
    conn: apsw.Connection, known: dict[str, int], limit: int, max_bytes: int = 1 << 62
) -> list[Signed]:
    """The ops held here past `known` (origin -> seq), oldest first per origin, at most
    about `limit` of them and `max_bytes` of bodies, always up to a signature."""
    out: list[Signed] = []
    size = 0
    for origin, top in vector(conn).items():
        start = known.get(origin, 0)
        if top <= start:
            continue
        rows = conn.execute(
            "SELECT body, signature FROM ops WHERE origin = ? AND seq > ? ORDER BY seq",
            (origin, start),
        )
        taken: list[Signed] = []
        for body, signature in rows:
            taken.append((bytes(body), None if signature is None else bytes(signature)))
            size += len(body)
            if signature is not None:
                out.extend(taken)
                taken = []
                if len(out) >= limit or size >= max_bytes:
                    return out
    return out


def verify_chain(
    head: tuple[int, bytes], signed: list[tuple[Op, bytes | None]], origin: str
) -> list[tuple[Op, bytes | None]]:
    """The ops of `origin` in `signed` that extend its chain past `head`, up to the last
    signature (an unsigned tail is a transaction not yet whole). SyncRefused for a gap,
    a fork, an op of another origin or a signature that does not verify."""
    seq, prev = head
    accepted: list[tuple[Op, bytes | None]] = []
    pending: list[tuple[Op, bytes | None]] = []
    for op, signature in signed:
        if op.origin != origin:
            raise SyncRefused(f"an op of {op.origin} among the ops of {origin}")
        if op.seq <= seq:
            continue  # held already; a different op at a held seq shows as a broken prev
        if op.seq != seq + 1 or op.prev != prev:
            raise SyncRefused(
                f"the chain of {origin} breaks at seq {op.seq} (held up to {seq}): a gap or a fork"
            )
        seq, prev = op.seq, op.digest()
        pending.append((op, signature))
        if signature is not None:
            if not check_signature(op, signature):
                raise SyncRefused(f"a bad signature on op {op.seq} of {origin}")
            accepted.extend(pending)
            pending = []
    return accepted


def store(conn: apsw.Connection, ops: list[tuple[Op, bytes | None]]) -> None:
    """Keep received ops (after verify_chain), so this node can pass them on."""
    conn.executemany(
        "INSERT INTO ops VALUES (?,?,?,?,?,?,?)",
        [
            (op.origin, op.seq, op.hlc, op.state.id, encode(op), op.digest(), signature)
            for op, signature in ops
        ],
    )
