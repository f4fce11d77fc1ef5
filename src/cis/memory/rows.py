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


class Clocks(msgspec.Struct, array_like=True):
    """The clocks of a memory's state as its row keeps them: the values live in the
    row's own columns, each origin DID once."""

    origins: list[str]
    registers: list[tuple[str, int, int]]  # name, hlc, origin
    tags: list[_StoredTag]
    untags: list[_StoredTag]


_encode_clocks = msgspec.msgpack.Encoder()
_decode_clocks = msgspec.msgpack.Decoder(Clocks)


def clocks(state: State) -> bytes:
    """The `clocks` column of a state."""
    origins: dict[str, int] = {}
    registers: list[tuple[str, int, int]] = []
    tags: list[_StoredTag] = []
    untags: list[_StoredTag] = []
    for name, r in state.registers.items():
        at = origins.get(r.origin)
        if at is None:
            at = origins[r.origin] = len(origins)
        registers.append((name, r.hlc, at))
    for into, given in ((tags, state.tags), (untags, state.untags)):
        for t in given:
            at = origins.get(t.origin)
            if at is None:
                at = origins[t.origin] = len(origins)
            into.append((t.hlc, at, t.position, t.name))
    return _encode_clocks.encode(Clocks(list(origins), registers, tags, untags))


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
    origins = stored.origins
    return State(
        id=row[1],
        scope=row[3],
        key=row[2],
        created_at=row[9],
        registers={n: Register(h, origins[o], values[n]) for n, h, o in stored.registers},
        tags=tuple(Tag(h, origins[o], p, n) for h, o, p, n in stored.tags),
        untags=tuple(Tag(h, origins[o], p, n) for h, o, p, n in stored.untags),
    )
