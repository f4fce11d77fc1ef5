"""Formatting of command results: JSON for machines, short text for people."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from ..errors import CISError
from ..model import HistoryEntry, Hit, Memory, Token

_encoder = msgspec.json.Encoder()


def emit_json(value: Any) -> None:
    sys.stdout.buffer.write(_encoder.encode(value) + b"\n")
    sys.stdout.flush()


def emit_lines(values: Sequence[Any], as_json: bool, line: Callable[[Any], str]) -> None:
    """Values as one JSON array, or one formatted line each."""
    if as_json:
        emit_json(values)
        return
    for value in values:
        print(line(value))


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def clock(hlc: int) -> str:
    """An HLC stamp as its wall time and counter."""
    return f"{when(hlc >> 16)}+{hlc & 0xFFFF}"


def short_did(did: str) -> str:
    """A DID cut to what tells nodes apart in a line (the whole one is in --json)."""
    return f"{did[:12]}...{did[-6:]}" if len(did) > 24 else did


def memory_line(memory: Memory) -> str:
    label = memory.key or memory.id
    tags = f" [{', '.join(memory.tags)}]" if memory.tags else ""
    return f"{label}  ({memory.scope}, {memory.domain}, {memory.category}){tags}\n  {memory.text}"


def memory_detail(memory: Memory) -> str:
    rows = [
        ("id", memory.id),
        ("key", memory.key or "-"),
        ("scope", memory.scope),
        ("domain", memory.domain),
        ("category", memory.category),
        ("tags", ", ".join(memory.tags) or "-"),
        ("metadata", _encoder.encode(memory.metadata).decode()),
        ("created", when(memory.created_at)),
        ("updated", when(memory.updated_at)),
        ("event", when(memory.event_at)),
        ("thread", memory.thread or "-"),
        ("version", str(memory.version)),
        ("origin", f"{memory.origin} (clock {clock(memory.hlc)})"),
        ("text", memory.text),
    ]
    return "\n".join(f"{name:>9}: {value}" for name, value in rows)


def hit_line(rank: int, hit: Hit) -> str:
    why = []
    if hit.text_score is not None:
        why.append(f"words {hit.text_score:.2f}")
    if hit.context_score is not None:
        why.append(f"with its thread {hit.context_score:.2f}")
    if hit.vector_score is not None:
        why.append(f"meaning {hit.vector_score:.2f}")
    if hit.time_score is not None:
        why.append("the time asked")
    return f"{rank:>2}. {hit.score:.3f} ({', '.join(why)})  {memory_line(hit.memory)}"


def history_line(entry: HistoryEntry, before: HistoryEntry | None = None) -> str:
    """One version of a memory and what it changed from the version `before` it."""
    head = f"v{entry.version} {entry.op:<6} {when(entry.at)}  from {short_did(entry.origin)}  "
    if entry.op == "delete":
        return head + "deleted"
    if entry.op == "lost":  # another write overtook it: shown whole
        return head + f"overtaken: {entry.text}"
    if before is None:
        tags = f" [{', '.join(entry.tags)}]" if entry.tags else ""
        return head + entry.text + tags
    changes = []
    if entry.text != before.text:
        changes.append(f"text: {entry.text}")
    if entry.tags != before.tags:
        added = [f"+{t}" for t in entry.tags if t not in before.tags]
        removed = [f"-{t}" for t in before.tags if t not in entry.tags]
        changes.append(f"tags {' '.join(added + removed) or 'reordered'}")
    if entry.metadata != before.metadata:
        changes.append(f"metadata: {_encoder.encode(entry.metadata).decode()}")
    return head + ("; ".join(changes) or "no change to text, tags or metadata")


def token_limits(token: Token) -> str:
    scope = f"scope {token.scope}" if token.scope else "all scopes"
    return f"{scope}, {'read-only' if token.read_only else 'read-write'}"


def token_line(token: Token) -> str:
    return (
        f"{token.name}  ({token_limits(token)})  created {when(token.created_at)}"
        f"  last used {when(token.last_used_at)}"
    )


def error(exc: CISError, as_json: bool) -> None:
    message = exc.told("cli")
    if as_json:
        emit_json({"error": {"code": exc.code, "message": message}})
    else:
        print(f"error: {message}", file=sys.stderr)
