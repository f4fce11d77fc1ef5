"""Import and export: exact round trips; bad files import nothing and name their lines."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cis import Conflict, InvalidInput, Node


def _fill(node: Node) -> None:
    node.memory.add("plain fact")
    node.memory.set(
        "cfg/db",
        "Billing runs on PostgreSQL 16",
        scope="project/billing",
        domain="public",
        category="fact",
        tags=["db", "infra"],
        metadata={"source": "wiki", "n": [1, 2.5, None, True]},
        event_at="2024-05-08T13:56:00+00:00",
    )
    m = node.memory.add("to be updated", tags=["x"])
    node.memory.update(m.id, "updated text")


def test_export_import_round_trips_exactly(tmp_path: Path) -> None:
    with Node.open(tmp_path / "a") as a:
        _fill(a)
        out = io.BytesIO()
        assert a.memory.export(out) == 3
        original = a.memory.list()
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(out.getvalue())
    with Node.open(tmp_path / "b") as b:
        assert len(b.memory.import_file(dump).added) == 3
        assert b.memory.list() == original
        again = io.BytesIO()
        b.memory.export(again)
        assert again.getvalue() == out.getvalue()
        with pytest.raises(Conflict):  # importing the same ids twice
            b.memory.import_file(dump)
        assert b.memory.count() == 3


def test_bad_lines_are_all_reported_and_nothing_imported(node: Node, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        b'{"text": "good one"}\n'
        b'{"text": "broken json"\n'
        b"\n"
        b'{"text": ""}\n'
        b'["not", "an", "object"]\n'
        b'{"text": "bad utf8 \xff\xfe"}\n'
        b'{"text": "ok", "scope": "nowhere"}\n'
    )
    with pytest.raises(InvalidInput) as err:
        node.memory.import_file(bad)
    message = str(err.value)
    assert "nothing imported" in message
    for line in ("line 2", "line 5", "line 6"):
        assert line in message
    assert node.memory.count() == 0
    bad.write_bytes(b'{"text": "fine"}\n{"text": ""}\n{"text": "ok", "scope": "nowhere"}\n')
    with pytest.raises(InvalidInput) as err:
        node.memory.import_file(bad)
    assert "line 2" in str(err.value) and "line 3" in str(err.value)
    assert node.memory.count() == 0


def test_json_list_and_unknown_fields(node: Node, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('[{"text": "first"}, {"text": "second", "tags": ["t"]}]')
    assert len(node.memory.import_file(good).added) == 2
    typo = tmp_path / "typo.jsonl"
    typo.write_text('{"txt": "misspelled"}\n')
    with pytest.raises(InvalidInput, match="line 1"):
        node.memory.import_file(typo)
    not_list = tmp_path / "obj.json"
    not_list.write_text('{"text": "x"}')
    with pytest.raises(InvalidInput, match="list"):
        node.memory.import_file(not_list)
    with pytest.raises(InvalidInput, match="cannot read"):
        node.memory.import_file(tmp_path / "missing.jsonl")
    assert node.memory.count() == 2


plain = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
texts = st.text(plain, min_size=1, max_size=60).filter(lambda t: t.strip())
records = st.lists(
    st.fixed_dictionaries(
        {"text": texts},
        optional={
            "scope": st.sampled_from(["global", "project/x", "agent/y"]),
            "domain": st.sampled_from(["private", "public"]),
            "tags": st.lists(st.from_regex(r"[a-z0-9_-]{1,10}", fullmatch=True), max_size=3),
            "metadata": st.dictionaries(
                st.text(plain, max_size=5),
                st.integers(-(2**63), 2**63 - 1) | st.text(plain, max_size=5) | st.booleans(),
                max_size=3,
            ),
            "event_at": st.integers(0, 2**41),
            "thread": st.from_regex(r"[a-z0-9/_-]{1,12}", fullmatch=True),
        },
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=records)
def test_any_memories_round_trip_through_export_and_import(tmp_path: Path, items: list) -> None:
    example = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis replays an example
    source, target = example / "src", example / "dst"
    with Node.open(source, background=False) as a:
        a.memory.add_many(items)
        out = io.BytesIO()
        a.memory.export(out)
        original = a.memory.list(limit=1000)
    dump = source / "dump.jsonl"
    dump.write_bytes(out.getvalue())
    with Node.open(target, background=False) as b:
        b.memory.import_file(dump)
        assert b.memory.list(limit=1000) == original


def test_supplied_vectors_travel_with_the_export(tmp_path: Path) -> None:
    import numpy as np

    vector = np.random.default_rng(3).normal(size=384).astype(np.float32)
    with Node.open(tmp_path / "a", background=False) as a:
        a.memory.add("brought its own vector", embedding=vector)
        a.memory.add("embedded here")
        out = io.BytesIO()
        a.memory.export(out)
    lines = out.getvalue().splitlines()
    assert b'"embedding"' in lines[0] and b'"embedding"' not in lines[1]
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(out.getvalue())
    with Node.open(tmp_path / "b", background=False) as b:
        b.memory.import_file(dump)
        assert b.memory.pending() == 1  # only the model-made one is embedded again
        hit = b.memory.search("x", embedding=vector, mode="vector", limit=1)[0]
        assert hit.memory.text == "brought its own vector"
        assert hit.vector_score == pytest.approx(1.0, abs=1e-6)
