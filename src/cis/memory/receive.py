"""Changes from peers: each origin's ops verified (chain, signature, clock, content),
then merged through the same Writer.apply as local writes, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import apsw
import msgspec
import numpy as np

from ..clock import ClockAhead, wall_ms
from ..errors import InvalidInput, SyncRefused
from ..net import oplog
from ..net.identity import DID_PREFIX
from ..net.merge import REGISTERS, State, merge, retraction
from ..store.sqlite import scalar
from . import validate as check
from .apply import Change, Writer, stored_states
from .rows import encode, to_state

Gate = Callable[[apsw.Connection], None]  # raises unless the sender may still send
MAX_TAG_ADDS = 4096  # adds and removals of tags one memory's state may carry
MAX_DID_CHARS = 64


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """What a batch of ops from a peer did: ops taken, memories changed, ops held in
    quarantine, and each origin whose ops were refused, with why."""

    ops: int = 0
    changed: int = 0
    held: int = 0  # ops verified and held in quarantine, not applied
    refused: dict[str, str] = {}


def check_state(state: State, max_text_bytes: int) -> None:
    """SyncRefused unless the state is one this node could have written itself."""
    try:
        if not check.is_uuid(state.id):
            raise InvalidInput(f"id {state.id!r} is not a UUID")
        check.scope(state.scope)
        key = check.key(state.key)
        if key is not None and state.id != check.keyed_id(state.scope, key):
            raise InvalidInput(f"id {state.id} is not the id of key {state.key!r}")
        check.when(state.created_at, "created_at")
        unknown = set(state.registers) - set(REGISTERS)
        if unknown:
            raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}")
        for register in state.registers.values():
            if not register.origin.startswith(DID_PREFIX) or len(register.origin) > MAX_DID_CHARS:
                raise InvalidInput(f"origin {register.origin[:80]!r} is not a did:key")
        values = {name: r.value for name, r in state.registers.items()}
        if "text" in values:
            check.text(values["text"], max_text_bytes)
        if "domain" in values:
            check.domain(values["domain"])
        if "category" in values:
            check.category(values["category"])
        if "metadata" in values:
            check.metadata(values["metadata"])
        if values.get("event_at") is not None:
            check.when(values["event_at"], "event_at")
        check.thread(values.get("thread"))
        if not isinstance(values.get("alive", False), bool):
            raise InvalidInput("alive must be true or false")
        if len(state.tags) + len(state.untags) > MAX_TAG_ADDS:
            raise InvalidInput(f"more than {MAX_TAG_ADDS} tag changes")
        for tag in (*state.tags, *state.untags):
            check.tags([tag.name])
    except InvalidInput as exc:
        raise SyncRefused(f"memory {state.id[:40]}: {exc}") from exc
    if state.value("domain") == "private" and (
        set(state.registers) - {"alive", "domain"} or state.value("alive") or state.tags
    ):
        raise SyncRefused(f"memory {state.id}: private content may not travel")


Vectors = dict[str, tuple[bytes, str, np.ndarray]]  # memory id -> (text hash, model, vector)


Grouped = dict[str, list[tuple[oplog.Op, bytes | None]]]


def group(signed: Sequence[oplog.Signed]) -> Grouped:
    """A peer's ops by origin; SyncRefused if a frame holds something else."""
    by_origin: Grouped = {}
    try:
        for body, signature in signed:
            op = oplog.decode(body)
            by_origin.setdefault(op.origin, []).append((op, signature))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SyncRefused(f"a frame that is not an op ({exc})") from exc
    return by_origin


def verified(
    writer: Writer,
    base: tuple[int, bytes],
    ops: list[tuple[oplog.Op, bytes | None]],
    origin: str,
    max_text_bytes: int,
    last: int,
) -> tuple[list[tuple[oplog.Op, bytes | None]], int]:
    """The ops that extend `origin`'s chain past `base`, each checked as content this
    node could have written, and the clock after them; SyncRefused or ClockAhead."""
    new = oplog.verify_chain(base, ops, origin)
    for op, _ in new:
        check_state(op.state, max_text_bytes)
        last = writer.clock.receive(last, max(op.hlc, op.state.last()[0]))
    return new, last


def receive(
    writer: Writer,
    signed: Sequence[oplog.Signed],
    max_text_bytes: int,
    denied: Callable[[str], bool] | None = None,
    vectors: Vectors | None = None,
    gate: Gate | None = None,
) -> Received:
    """Verify and apply a peer's ops. Each origin's ops are taken or refused whole; the
    ops of an origin `denied` names are refused, whoever passes them on. `vectors` are
    the peer's of the memories' texts, used where that text wins (no embedding again).
    `gate` runs first inside the write; what it raises ends the call, nothing written."""
    by_origin = group(signed)
    refused: dict[str, str] = {}
    with writer.db.write() as conn:
        if gate is not None:
            gate(conn)
        last = int(scalar(conn, "SELECT value FROM meta WHERE name = 'hlc'"))
        taken: list[tuple[oplog.Op, bytes | None]] = []
        for origin, ops in by_origin.items():
            if denied is not None and denied(origin):
                refused[origin] = f"{origin} is denied on this node"
                continue
            try:
                new, last = verified(
                    writer, oplog.head(conn, origin), ops, origin, max_text_bytes, last
                )
            except (SyncRefused, ClockAhead) as exc:
                refused[origin] = str(exc)
                continue
            taken.extend(new)
        oplog.store(conn, taken)
        incoming: dict[str, State] = {}
        for op, _ in taken:
            known = incoming.get(op.state.id)
            incoming[op.state.id] = op.state if known is None else merge(known, op.state)
        changes, held = _changes(conn, incoming, vectors or {})
        applied, queued, _ = writer.apply(conn, changes)
        _keep_losers(conn, [op.state for op, _ in taken], incoming, held)
        conn.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'hlc'", (last,))
        generation = writer.fresh.bump_generation(conn) if changes else None
    writer.settled(generation, applied, queued)
    return Received(ops=len(taken), changed=sum(a.changed for a in applied), refused=refused)


def _changes(
    conn: apsw.Connection, incoming: dict[str, State], vectors: Vectors
) -> tuple[list[Change], set[str]]:
    """The changes to apply, and which of the memories this node held before. A memory
    this node holds as private stays private unless the peer's domain is the later
    write; then the private content is set aside into history, so it never travels by
    merging into public memory."""
    rows = stored_states(conn, list(incoming))
    changes = []
    for memory_id, state in incoming.items():
        row = rows.get(memory_id)
        given = vectors.get(memory_id)
        if row is None or row[4] != "private" or row[-2]:  # not live private content
            if given is None:
                changes.append(Change(state=state))
            else:
                text_hash, model, vector = given
                changes.append(
                    Change(state=state, vector=vector, model=model, vector_for=text_hash)
                )
            continue
        mine = to_state(row)
        if merge(mine, state).value("domain") == "private":
            continue  # this node's later choice keeps it private; the peer's is the loser
        stamp, origin = mine.registers["domain"].hlc, mine.registers["domain"].origin
        changes.append(Change(state=merge(retraction(mine, stamp, origin), state), replace=True))
    return changes, set(rows)


def _keep_losers(
    conn: apsw.Connection, states: list[State], incoming: dict[str, State], held: set[str]
) -> None:
    """History keeps every text a peer sent that another write overtook before it could
    be shown here (a concurrent edit's loser, or one its own origin soon replaced). A
    text can lose only to one held here before or to a later one of the same batch."""
    states = [
        s
        for s in states
        if s.id in held or s.registers.get("text") != incoming[s.id].registers.get("text")
    ]
    if not states:
        return
    rows = stored_states(conn, list({s.id for s in states}))
    kept: set[tuple[str, int, str]] = set()
    for state in states:
        theirs = state.registers.get("text")
        row = rows.get(state.id)
        if theirs is None or row is None:
            continue
        winner = to_state(row).registers.get("text")
        if winner is None or (winner.hlc, winner.origin) == (theirs.hlc, theirs.origin):
            continue
        seen = (state.id, theirs.hlc, theirs.origin)
        if seen in kept or scalar(
            conn,
            "SELECT 1 FROM memory_history WHERE memory_rid = ? AND hlc = ? AND origin = ?",
            (row[0], theirs.hlc, theirs.origin),
        ):
            continue
        kept.add(seen)
        conn.execute(
            "INSERT INTO memory_history(memory_rid, version, op, text, tags, metadata, at,"
            " hlc, origin) VALUES (?,?,'lost',?,?,?,?,?,?)",
            (
                row[0],
                row[12],
                theirs.value,
                encode(state.visible_tags()),
                encode(state.value("metadata")),
                wall_ms(theirs.hlc),
                theirs.hlc,
                theirs.origin,
            ),
        )
