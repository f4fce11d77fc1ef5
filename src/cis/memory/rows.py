"""Rows of the memories table to and from Memory values."""

from __future__ import annotations

from typing import Any

import msgspec

from ..model import HistoryEntry, Memory
from ..net.merge import Register, State, Tag

COLUMNS = (
    "rid, id, key, scope, domain, category, text, tags, metadata, "
    "created_at, updated_at, event_at, version, origin, hlc, thread"
)
STATE_COLUMNS = f"{COLUMNS}, deleted, clocks"  # a row both to_memory and to_state read

_decode_tags = msgspec.json.Decoder(list[str])
_StoredTag = tuple[int, int, int, str]  # hlc, origin (an index into `origins`), position, name
_decode_meta = msgspec.json.Decoder(dict[str, Any])
encode = msgspec.json.encode


def to_memory(row: tuple[Any, ...]) -> Memory:
    """A Memory from a row selected with COLUMNS."""
    return Memory(
        id=row[1],
        key=row[2],
        scope=row[3],
        domain=row[4],
        category=row[5],
        text=row[6],
        tags=tuple(_decode_tags.decode(row[7])),
        metadata=_decode_meta.decode(row[8]),
        created_at=row[9],
        updated_at=row[10],
        event_at=row[11],
        version=row[12],
        origin=row[13],
        hlc=row[14],
        thread=row[15],
    )


def to_history(memory_id: str, row: tuple[Any, ...]) -> HistoryEntry:
    version, op, text, tags, metadata, at, origin, hlc = row
    return HistoryEntry(
        memory_id=memory_id,
        version=version,
        op=op,
        text=text,
        tags=tuple(_decode_tags.decode(tags)),
        metadata=_decode_meta.decode(metadata),
        at=at,
        origin=origin,
        hlc=hlc,
    )


# the registers by number in the compact `clocks` column; append only (stored numbers)
_NUMBERED = ("text", "domain", "category", "metadata", "event_at", "alive", "thread")
_NUMBER = {name: n for n, name in enumerate(_NUMBERED)}


class Clocks(msgspec.Struct, array_like=True):
    """The clocks of a memory's state as its row keeps them: the values live in the
    row's own columns. Compact (every row written since): registers by number, each
    clock as its distance below the memory's latest (the row's `hlc`), origin 0 the
    latest writer (the row's `origin`) and the others listed once from 1; most rows
    then hold a few bytes per register. Older rows name registers, clocks and origins
    in full."""

    origins: list[str]
    registers: list[tuple[str | int, int, int]]  # name (number), hlc (distance), origin
    tags: list[_StoredTag]
    untags: list[_StoredTag]
    compact: bool = False


_encode_clocks = msgspec.msgpack.Encoder()
_decode_clocks = msgspec.msgpack.Decoder(Clocks)


_one_change: dict[tuple[str, ...], bytes] = {}  # by register names: at most 2**7 of them


def clocks(state: State) -> bytes:
    """The `clocks` column of a state (compact: its row keeps state.last() as hlc and
    origin)."""
    if not state.tags and not state.untags:
        stamps = {(r.hlc, r.origin) for r in state.registers.values()}
        if len(stamps) == 1:  # one change wrote it all (a new memory): only names differ
            names = tuple(state.registers)
            known = _one_change.get(names)
            if known is None:
                known = _one_change[names] = _clocks(state)
            return known
    return _clocks(state)


def _clocks(state: State) -> bytes:
    latest, writer = state.last()
    origins: dict[str, int] = {writer: 0}

    def number(origin: str) -> int:
        at = origins.get(origin)
        if at is None:
            at = origins[origin] = len(origins)
        return at

    registers: list[tuple[str | int, int, int]] = [
        (_NUMBER[name], latest - r.hlc, number(r.origin)) for name, r in state.registers.items()
    ]
    tags, untags = (
        [(latest - t.hlc, number(t.origin), t.position, t.name) for t in given]
        for given in (state.tags, state.untags)
    )
    return _encode_clocks.encode(Clocks(list(origins)[1:], registers, tags, untags, True))


def to_state(row: tuple[Any, ...]) -> State:
    """The state of a row selected with STATE_COLUMNS."""
    stored = _decode_clocks.decode(row[-1])
    values = {
        "text": row[6],
        "domain": row[4],
        "category": row[5],
        "metadata": _decode_meta.decode(row[8]),
        "event_at": row[11],
        "thread": row[15],
        "alive": not row[-2],
    }
    origins = [row[13], *stored.origins] if stored.compact else stored.origins

    def stamp(h: int) -> int:
        return row[14] - h if stored.compact else h

    names = [_NUMBERED[n] if isinstance(n, int) else n for n, _, _ in stored.registers]
    return State(
        id=row[1],
        scope=row[3],
        key=row[2],
        created_at=row[9],
        registers={
            name: Register(stamp(h), origins[o], values[name])
            for name, (_, h, o) in zip(names, stored.registers, strict=True)
        },
        tags=tuple(Tag(stamp(h), origins[o], p, n) for h, o, p, n in stored.tags),
        untags=tuple(Tag(stamp(h), origins[o], p, n) for h, o, p, n in stored.untags),
    )
