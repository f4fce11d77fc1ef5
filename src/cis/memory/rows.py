"""Rows of the memories table to and from Memory values."""

from __future__ import annotations

from typing import Any

import msgspec

from ..model import HistoryEntry, Memory

COLUMNS = (
    "rid, id, key, scope, domain, category, text, tags, metadata, "
    "created_at, updated_at, event_at, version"
)

_decode_tags = msgspec.json.Decoder(list[str])
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
    )


def to_history(memory_id: str, row: tuple[Any, ...]) -> HistoryEntry:
    version, op, text, tags, metadata, at = row
    return HistoryEntry(
        memory_id=memory_id,
        version=version,
        op=op,
        text=text,
        tags=tuple(_decode_tags.decode(tags)),
        metadata=_decode_meta.decode(metadata),
        at=at,
    )
