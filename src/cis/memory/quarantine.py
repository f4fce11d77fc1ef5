"""Quarantine: ops from a peer this node does not yet trust, verified like any others
(chain, signatures, content, clock) and then held apart, unapplied, until someone
approves or rejects them.

A held batch is one origin's ops of one frame. Batches of one origin chain on each
other, so they are approved in order; rejecting one drops it and the batches after it,
and that sender's ops up to there are not taken from it again."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence

import apsw
import msgspec

from ..clock import ClockAhead, now_ms
from ..errors import InvalidInput, NotFound, SyncRefused
from ..net import oplog
from ..store.sqlite import Database, scalar
from .apply import Writer
from .receive import Gate, Received, group, verified

MAX_HELD_BYTES = 64 * 1024 * 1024  # all held op bodies together; past it a sender is refused
PREVIEW_CHARS = 120
SharedVector = tuple[str, bytes, str, bytes]  # memory id, text hash, model, float32 bytes
_batch = msgspec.msgpack.Encoder()
_ops = msgspec.msgpack.Decoder(list[tuple[bytes, bytes | None]])
_vectors = msgspec.msgpack.Decoder(list[tuple[str, bytes, str, bytes]])


class HeldBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One origin's ops of one frame, held: who sent them, whose they are, which seqs,
    how many memories they touch, and the first text among them."""

    id: int
    at: int
    sender: str
    origin: str
    first_seq: int
    last_seq: int
    ops: int
    memories: int
    preview: str


def hold(
    writer: Writer,
    signed: Sequence[oplog.Signed],
    sender: str,
    max_text_bytes: int,
    denied: Callable[[str], bool],
    vectors: Sequence[SharedVector],
    gate: Gate | None = None,
) -> Received:
    """Verify a held sender's ops and keep them apart; each origin's are held or
    refused whole (denied, rejected here before, broken, or the quarantine full).
    `gate` runs first inside the write, as in receive."""
    by_origin = group(signed)
    refused: dict[str, str] = {}
    held = 0
    with writer.db.write() as conn:
        if gate is not None:
            gate(conn)
        _purge(conn)
        last = int(scalar(conn, "SELECT value FROM meta WHERE name = 'hlc'"))
        used = int(scalar(conn, "SELECT coalesce(sum(length(ops)), 0) FROM held"))
        for origin, ops in by_origin.items():
            if denied(origin):
                refused[origin] = f"{origin} is denied on this node"
                continue
            floor = scalar(
                conn, "SELECT seq FROM rejected WHERE sender = ? AND origin = ?", (sender, origin)
            )
            ops = [(op, sig) for op, sig in ops if op.seq > int(floor or 0)]
            try:
                new, _ = verified(writer, _top(conn, origin), ops, origin, max_text_bytes, last)
            except SyncRefused as exc:
                refused[origin] = f"{exc} (or it builds on ops rejected here)"
                continue
            except ClockAhead as exc:
                refused[origin] = str(exc)
                continue
            if not new:
                continue
            body = _batch.encode([(oplog.encode(op), sig) for op, sig in new])
            if used + len(body) > MAX_HELD_BYTES:
                refused[origin] = "the quarantine is full: review it (`cis network review`)"
                continue
            used += len(body)
            ids = {op.state.id for op, _ in new}
            conn.execute(
                "INSERT INTO held(at, sender, origin, first_seq, last_seq, last_hash, ops,"
                " vectors) VALUES (?,?,?,?,?,?,?,?)",
                (
                    now_ms(),
                    sender,
                    origin,
                    new[0][0].seq,
                    new[-1][0].seq,
                    new[-1][0].digest(),
                    body,
                    _batch.encode([v for v in vectors if v[0] in ids]),
                ),
            )
            held += len(new)
    return Received(held=held, refused=refused)


def _top(conn: apsw.Connection, origin: str) -> tuple[int, bytes]:
    """Where `origin`'s chain ends here, counting held ops."""
    seq, digest = oplog.head(conn, origin)
    rows = conn.execute(
        "SELECT last_seq, last_hash FROM held WHERE origin = ? ORDER BY last_seq DESC LIMIT 1",
        (origin,),
    ).fetchall()
    if rows and int(rows[0][0]) > seq:  # type: ignore[arg-type]
        return int(rows[0][0]), bytes(rows[0][1])  # type: ignore[arg-type]
    return seq, digest


def _purge(conn: apsw.Connection) -> None:
    """Drop held batches that a trusted peer has delivered meanwhile."""
    conn.execute(
        "DELETE FROM held WHERE last_seq <= coalesce("
        "(SELECT max(seq) FROM ops WHERE ops.origin = held.origin), 0)"
    )


def vector(conn: apsw.Connection, sender: str) -> dict[str, int]:
    """What to tell `sender` this node holds: the log, the held ops, and what it
    rejected of this sender's (so none of it is sent again)."""
    have = oplog.vector(conn)
    for origin, seq in conn.execute(
        "SELECT origin, max(last_seq) FROM held GROUP BY origin"
        " UNION ALL SELECT origin, seq FROM rejected WHERE sender = ?",
        (sender,),
    ):
        have[str(origin)] = max(have.get(str(origin), 0), int(seq))
    return have


def batches(db: Database) -> builtins.list[HeldBatch]:
    """Every batch held, oldest first."""
    with db.write() as conn:
        _purge(conn)
        rows = conn.execute(
            "SELECT id, at, sender, origin, first_seq, last_seq, ops FROM held ORDER BY id"
        ).fetchall()
    return [_described(row) for row in rows]


def _described(row: tuple[object, ...]) -> HeldBatch:
    ops = [oplog.decode(body) for body, _ in _ops.decode(row[6])]  # type: ignore[arg-type]
    texts = [op.state.value("text") for op in ops if "text" in op.state.registers]
    preview = str(texts[0]) if texts else ""
    if len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 1] + "…"
    return HeldBatch(
        id=row[0],  # type: ignore[arg-type]
        at=row[1],  # type: ignore[arg-type]
        sender=row[2],  # type: ignore[arg-type]
        origin=row[3],  # type: ignore[arg-type]
        first_seq=row[4],  # type: ignore[arg-type]
        last_seq=row[5],  # type: ignore[arg-type]
        ops=len(ops),
        memories=len({op.state.id for op in ops}),
        preview=preview,
    )


def _chosen(conn: apsw.Connection, ids: Sequence[int] | None) -> list[tuple[object, ...]]:
    """The held rows of `ids` (None: all), oldest first; NotFound for an unknown id."""
    rows = conn.execute(
        "SELECT id, at, sender, origin, first_seq, last_seq, ops, vectors FROM held ORDER BY id"
    ).fetchall()
    if ids is None:
        return rows
    known = {int(r[0]) for r in rows}  # type: ignore[arg-type]
    missing = sorted(set(ids) - known)
    if missing:
        raise NotFound(
            f"nothing held as {', '.join(map(str, missing))}; `cis network review` lists them"
        )
    return [r for r in rows if r[0] in set(ids)]


def pending(
    db: Database, ids: Sequence[int] | None
) -> builtins.list[tuple[HeldBatch, list[oplog.Signed], list[SharedVector]]]:
    """The batches to approve, in chain order, with their ops and vectors; InvalidInput
    if one waits on an earlier batch of its origin that is not among them."""
    with db.write() as conn:
        _purge(conn)
        rows = _chosen(conn, ids)
        chosen = {r[0] for r in rows}
        for row in rows:
            earlier = conn.execute(
                "SELECT id FROM held WHERE origin = ? AND id < ?", (row[3], row[0])
            ).fetchall()
            waiting = [int(e[0]) for e in earlier if e[0] not in chosen]  # type: ignore[arg-type]
            if waiting:
                raise InvalidInput(
                    f"batch {row[0]} follows batch {waiting[0]} of the same origin:"
                    " approve that first, or approve them together"
                )
    return [
        (_described(row), _ops.decode(row[6]), _vectors.decode(row[7]))  # type: ignore[arg-type]
        for row in rows
    ]


def release(db: Database, batch_id: int) -> None:
    """Forget a batch once it is applied."""
    with db.write() as conn:
        conn.execute("DELETE FROM held WHERE id = ?", (batch_id,))


def reject(db: Database, ids: Sequence[int] | None) -> builtins.list[HeldBatch]:
    """Drop these batches and, as they build on them, the later ones of their origins;
    their senders' ops up to there are not taken from those senders again."""
    with db.write() as conn:
        first: dict[str, int] = {}
        for row in _chosen(conn, ids):
            first.setdefault(str(row[3]), int(row[0]))  # type: ignore[call-overload]
        gone = []
        for origin, batch_id in first.items():
            rows = conn.execute(
                "DELETE FROM held WHERE origin = ? AND id >= ?"
                " RETURNING id, at, sender, origin, first_seq, last_seq, ops",
                (origin, batch_id),
            ).fetchall()
            for row in rows:
                conn.execute(
                    "INSERT INTO rejected VALUES (?,?,?) ON CONFLICT(sender, origin)"
                    " DO UPDATE SET seq = max(seq, excluded.seq)",
                    (row[2], row[3], row[5]),
                )
                gone.append(_described(row))
    return sorted(gone, key=lambda b: b.id)
