"""Values at the edges: NUL characters, deep nesting, times past any calendar, big pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cis import InvalidInput, Node
from cis.memory import validate as check
from cis.model import Listing, Search
from cis.shapes import convert


def nested(depth: int) -> dict[str, Any]:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return {"deep": value}


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"text": "a\x00b"}, "text holds a NUL"),
        ({"text": "ok", "key": "k\x00"}, "key"),
        ({"text": "ok", "tags": ["t\x00"]}, "tag"),
        ({"text": "ok", "metadata": {"note": "x\x00"}}, "metadata.note holds a NUL"),
        ({"text": "ok", "metadata": {"k\x00": 1}}, "holds a NUL"),
        ({"text": "ok", "metadata": nested(1000)}, "nested deeper than 64"),
        ({"text": "ok", "event_at": 2**63}, "event_at 9223372036854775808 is outside"),
        ({"text": "ok", "event_at": str(2**70)}, "is outside the years"),
        ({"text": "ok", "event_at": -(2**63) - 1}, "is outside the years"),
    ],
)
def test_bad_values_are_refused_by_name(node: Node, fields: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        node.memory.add_many([fields])
    assert node.memory.count() == 0


def test_search_refuses_nul_and_times_past_the_calendar(node: Node) -> None:
    with pytest.raises(InvalidInput, match="query holds a NUL"):
        node.memory.search("a\x00b")
    with pytest.raises(InvalidInput, match="since"):
        node.memory.search("x", since=2**63)
    with pytest.raises(InvalidInput, match="until"):
        node.memory.list(until="99999-01-01")


def test_times_a_user_writes() -> None:
    assert check.when("2026-12-01", "t") == int(
        datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000
    )
    assert check.when("1700000000000", "t") == 1_700_000_000_000
    now = check.now_ms()
    assert now - 3_600_000 - 5000 <= check.when("1h", "t") <= now - 3_600_000  # type: ignore[operator]
    assert check.when("7d", "t") <= now - 7 * 86_400_000  # type: ignore[operator]
    with pytest.raises(InvalidInput, match="needs a time zone"):
        check.when("2026-12-01T10:00", "t")
    with pytest.raises(InvalidInput, match="is not a time"):
        check.when("last tuesday", "t")


def test_a_page_of_1000_works(node: Node) -> None:
    node.memory.add_many([{"text": f"note {i}"} for i in range(1001)])
    page = node.access().list(Listing(limit=1000))
    assert len(page.items) == 1000 and page.next_cursor is not None


def test_shells_decode_in_plain_words() -> None:
    cases = [
        ({"query": 5}, "query must be a string, not a whole number"),
        ({"query": "x", "tags": "a"}, "tags must be a list, not a string"),
        ({"query": "x", "tags": [1]}, "tags[0] must be a string, not a whole number"),
        ({"query": "x", "tag": ["a"]}, "unknown field tag; the search takes: "),
        ({}, "the search needs query"),
        ({"query": "x", "scope": "a\x00"}, "scope holds a NUL character"),
    ]
    for fields, message in cases:
        with pytest.raises(InvalidInput) as caught:
            convert(fields, Search, "the search")
        assert str(caught.value).startswith(message), str(caught.value)
