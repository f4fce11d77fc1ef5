"""Cache keys of the memory service: strings, which hash once and cache their hash."""

from __future__ import annotations

from typing import Any

import msgspec


def by_id(memory_id: str) -> str:
    return "i|" + memory_id


def by_key(scope: str, key: str) -> str:
    return f"k|{scope}|{key}"  # a scope holds no '|', so this cannot collide


def query_vector(model: str, query: str) -> str:
    return f"q|{model}|{query}"


def compound(kind: str, *parts: Any) -> str:
    """A key for several values at once (filters, limits, epochs), unambiguous as JSON."""
    return kind + "|" + msgspec.json.encode(parts).decode()
