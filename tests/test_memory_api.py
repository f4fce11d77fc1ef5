"""The Python API contract of node.memory."""

from __future__ import annotations

import gc
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cis import Conflict, InvalidInput, Node, NotFound
from cis.memory.validate import keyed_id

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_add_get_by_id_and_key(node: Node) -> None:
    m = node.memory.add("Billing runs on PostgreSQL 16", key="project/db", tags=["db", "infra"])
    assert m.id == keyed_id("global", "project/db")  # the same on every node
    assert UUID7.fullmatch(node.memory.add("a fact without a key").id)
    assert (m.scope, m.domain, m.category, m.version) == ("global", "private", "context", 1)
    assert node.memory.get(m.id) == m
    assert node.memory.get("project/db") == m
    assert node.memory.get("project/db", scope="agent/x") is None
    assert node.memory.get("no-such-key") is None


def test_set_upserts_by_scope_and_key(node: Node) -> None:
    first = node.memory.set("editor", "Alice uses vim", scope="agent/claude")
    second = node.memory.set("editor", "Alice uses helix", scope="agent/claude", tags=["ui"])
    assert second.id == first.id and second.version == 2 and second.tags == ("ui",)
    other = node.memory.set("editor", "Bob uses emacs")  # global scope: a different memory
    assert other.id != first.id
    assert node.memory.get("editor", scope="agent/claude").text == "Alice uses helix"


def test_add_with_a_used_key_conflicts(node: Node) -> None:
    node.memory.add("one", key="k")
    with pytest.raises(Conflict, match="already in use"):
        node.memory.add("two", key="k")
    assert node.memory.count() == 1


def test_missing_memories(node: Node) -> None:
    for call in (
        lambda: node.memory.update("nope", "x"),
        lambda: node.memory.delete("nope"),
        lambda: node.memory.history("nope"),
    ):
        with pytest.raises(NotFound):
            call()


def test_update_history_and_delete(node: Node) -> None:
    m = node.memory.add("v1 text", key="doc", metadata={"a": 1})
    u = node.memory.update(m.id, "v2 text", metadata={"a": 2}, tags=["t"])
    assert (u.version, u.text, u.metadata, u.tags) == (2, "v2 text", {"a": 2}, ("t",))
    assert node.memory.update(m.id, "v2 text") == u  # no change, no new version
    gone = node.memory.delete("doc")
    assert gone.id == m.id
    assert node.memory.get(m.id) is None and node.memory.get("doc") is None
    history = node.memory.history(m.id)
    assert [(h.version, h.op, h.text) for h in history] == [
        (1, "add", "v1 text"),
        (2, "update", "v2 text"),
        (3, "delete", "v2 text"),
    ]
    again = node.memory.add("reused key", key="doc")  # a deleted key can be used again:
    assert (again.id, again.version) == (m.id, 4)  # one key names one memory, everywhere
    assert node.memory.history("doc")[-1].op == "add"


def test_delete_removes_words_and_vector(node: Node) -> None:
    m = node.memory.add("the aurora borealis over Tromsø")
    node.memory.flush()
    assert node.status().vectors == 1
    node.memory.delete(m.id)
    assert node.memory.search("aurora borealis", mode="text") == []
    assert node.memory.search("northern lights in Norway", mode="vector") == []
    assert node.status().vectors == 0


def test_update_reembeds_without_duplicating(node: Node) -> None:
    m = node.memory.add("The cat sleeps on the sofa")
    node.memory.flush()
    node.memory.update(m.id, "Quarterly revenue grew by twelve percent")
    node.memory.flush()
    with node.db.read() as conn:
        assert conn.execute("SELECT count(*) FROM memory_vectors").fetchall()[0][0] == 1
    top = node.memory.search("how did sales do this quarter", mode="vector", limit=1)
    assert top[0].memory.id == m.id and top[0].vector_score > 0.3


def test_a_search_after_an_edit_counts_the_new_words(node: Node) -> None:
    from cis.memory.context import Known

    m = node.memory.add("glacier after glacier")
    for text in ("the harbour at dawn", "a glacier seen from afar on a long walk"):
        node.memory.add(text)
    node.memory.flush()

    def score() -> float | None:
        hit = next(h for h in node.memory.search("glacier", limit=3) if h.memory.id == m.id)
        return hit.text_score

    before = score()  # the searcher now knows the memory's words
    node.memory.update(m.id, "a long trek in spring past one glacier, many lakes and a town")
    node.memory.flush()
    after = score()
    node.memory.searcher.known = Known()  # nothing known: every word read afresh
    assert before is not None and after is not None
    assert after < before and after == score()


def test_identical_text_is_embedded_once(node: Node) -> None:
    for _ in range(3):
        node.memory.add("the same sentence, three times")
    node.memory.flush()
    assert node.memory.indexer.embedded == 1
    assert node.memory.indexer.reused == 2
    assert node.status().vectors == 3


def test_written_memories_are_left_out_of_the_cycle_collector(node: Node) -> None:
    """A bulk add makes thousands of these; tracked, each full collection walked them."""
    nested = {"source": "wiki", "n": [1, {"deep": [2.5, None]}]}
    added = node.memory.add_many(
        [{"text": f"fact {i} about billing", "tags": ["x"], "metadata": nested} for i in range(3)]
    )
    hits = node.memory.search("billing", mode="text")
    assert hits and not any(gc.is_tracked(x) for x in [*added, *hits])
    gc.collect()  # what they hold is intact after a collection
    assert node.memory.get(added[0].id).metadata == nested == hits[0].memory.metadata


def test_paraphrase_is_found_by_meaning(node: Node) -> None:
    node.memory.add("Kim takes after-hours DBA pages")
    node.memory.add("Alice prefers dark mode in every editor")
    node.memory.add("Billing runs on PostgreSQL 16")
    node.memory.flush()
    hits = node.memory.search("how do I reach a database admin at night")
    assert hits[0].memory.text == "Kim takes after-hours DBA pages"
    words = node.memory.search("what database does billing use")
    assert words[0].memory.text == "Billing runs on PostgreSQL 16"
    # it holds one of the query's words ("billing"), and no memory holds most of them:
    # one shared word is no evidence, so it is found by meaning and says so
    assert words[0].text_score is None and words[0].context_score is None
    assert words[0].vector_score is not None


def test_a_word_searched_before_any_memory_held_it_is_found_once_one_does(node: Node) -> None:
    assert node.memory.search("okapis", mode="text") == []
    added = node.memory.add("okapis live in the Ituri forest")
    assert [h.memory.id for h in node.memory.search("okapis", mode="text")] == [added.id]


def test_words_find_a_memory_before_its_vector_lands(node: Node) -> None:
    node.memory.add("ephemeral kumquat marmalade")
    hits = node.memory.search("kumquat", mode="text")
    assert [h.memory.text for h in hits] == ["ephemeral kumquat marmalade"]


def test_scores_are_in_unit_range_and_sorted(node: Node) -> None:
    node.memory.add_many([{"text": f"note {i} about rivers and lakes"} for i in range(20)])
    node.memory.flush()
    for mode in ("hybrid", "vector", "text"):
        hits = node.memory.search("lakes", mode=mode, limit=20)
        scores = [h.score for h in hits]
        assert scores and all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)


def test_search_filters(node: Node) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    node.memory.add(
        "apple pie recipe", scope="project/food", category="fact", tags=["sweet"], event_at=base
    )
    node.memory.add(
        "apple cider vinegar",
        scope="project/food",
        domain="public",
        event_at=base + timedelta(days=10),
    )
    node.memory.add(
        "apple stock price",
        scope="agent/trader",
        category="note",
        event_at=(base + timedelta(days=20)).isoformat(),
    )
    node.memory.flush()

    def texts(**kw: Any) -> set[str]:
        return {h.memory.text for h in node.memory.search("apple", **kw)}

    assert texts(scope="project/food") == {"apple pie recipe", "apple cider vinegar"}
    assert texts(domain="public") == {"apple cider vinegar"}
    assert texts(category="note") == {"apple stock price"}
    assert texts(tags=["sweet"]) == {"apple pie recipe"}
    assert texts(since=base + timedelta(days=5)) == {"apple cider vinegar", "apple stock price"}
    assert texts(until=int((base + timedelta(days=5)).timestamp() * 1000)) == {"apple pie recipe"}
    assert texts(scope="project/food", mode="vector") == {"apple pie recipe", "apple cider vinegar"}


def test_supplied_embeddings(node: Node) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(5, 384)).astype(np.float32)
    ids = [node.memory.add(f"opaque item {i}", embedding=vectors[i]).id for i in range(5)]
    hits = node.memory.search("ignored", embedding=vectors[3].tolist(), mode="vector", limit=1)
    assert hits[0].memory.id == ids[3] and hits[0].vector_score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InvalidInput, match="dimensions"):
        node.memory.add("bad", embedding=[1.0, 2.0])
    with pytest.raises(InvalidInput, match="NaN"):
        node.memory.add("bad", embedding=[float("nan")] * 384)
    assert node.memory.pending() == 0  # supplied vectors need no embedding


def test_list_filters_and_pagination(node: Node) -> None:
    for i in range(7):
        node.memory.add(f"item {i}", key=f"cfg/{i}" if i % 2 else None, scope="project/p")
    page1 = node.memory.list(scope="project/p", limit=3)
    page2 = node.memory.list(scope="project/p", limit=3, after=page1[-1].id)
    page3 = node.memory.list(scope="project/p", limit=3, after=page2[-1].id)
    assert [m.text for m in page1 + page2 + page3] == [f"item {i}" for i in range(7)]
    assert [m.key for m in node.memory.list(prefix="cfg/", scope="project/p")] == [
        "cfg/1",
        "cfg/3",
        "cfg/5",
    ]
    with pytest.raises(InvalidInput, match="cursor"):
        node.memory.list(after="nope")


def test_add_many_is_all_or_nothing(node: Node) -> None:
    with pytest.raises(InvalidInput, match="item 3"):
        node.memory.add_many([{"text": "ok"}, {"text": "fine"}, {"text": ""}])
    with pytest.raises(InvalidInput, match="unknown memory field"):
        node.memory.add_many([{"text": "ok", "colour": "red"}])
    vector = [1.0] * node.memory.index.dim
    with pytest.raises(InvalidInput, match="item 2: embedding is all zeros"):
        node.memory.add_many(
            [{"text": "a", "embedding": vector}, {"text": "b", "embedding": [0.0] * len(vector)}]
        )
    assert node.memory.count() == 0
    assert len(node.memory.add_many([{"text": "a"}, {"text": "b", "tags": ["x"]}])) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": ""}, "empty"),
        ({"text": "   "}, "empty"),
        ({"text": "x" * 70_000}, "limit is 65536"),
        ({"text": "bad \udcff byte"}, "not valid UTF-8"),
        ({"text": "ok", "scope": "projects/x"}, "unknown scope"),
        ({"text": "ok", "scope": "project/"}, "unknown scope"),
        ({"text": "ok", "category": "gossip"}, "unknown category"),
        ({"text": "ok", "domain": "secret"}, "unknown domain"),
        ({"text": "ok", "tags": "notalist"}, "list of strings"),
        ({"text": "ok", "tags": ["has space"]}, "must not hold spaces"),
        ({"text": "ok", "metadata": [1, 2]}, "JSON object"),
        ({"text": "ok", "metadata": {"x": float("nan")}}, "NaN"),
        ({"text": "ok", "metadata": {"x": object()}}, "not a JSON value"),
        ({"text": "ok", "metadata": {1: "x"}}, "keys must be strings"),
        ({"text": "ok", "event_at": "yesterday"}, "ISO-8601"),
        ({"text": "ok", "event_at": datetime(2024, 1, 1)}, "time zone"),
        ({"text": "ok", "key": " padded "}, "surrounding spaces"),
        ({"text": "ok", "thread": ""}, "thread must be 1-256 characters"),
        ({"text": "ok", "thread": "a\x01b"}, "thread must not hold control characters"),
        ({"text": "ok", "thread": 7}, "thread must be 1-256 characters"),
    ],
)
def test_bad_input_is_a_clear_error(node: Node, kwargs: dict[str, Any], message: str) -> None:
    text = kwargs.pop("text")
    with pytest.raises(InvalidInput, match=message):
        node.memory.add(text, **kwargs)
    assert node.memory.count() == 0


def test_bad_search_arguments(node: Node) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        node.memory.search("  ")
    with pytest.raises(InvalidInput, match="mode"):
        node.memory.search("x", mode="fuzzy")
    with pytest.raises(InvalidInput, match="limit"):
        node.memory.search("x", limit=0)


# a NUL is refused (tests/test_edges.py)
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(metadata=st.dictionaries(texts, json_values, max_size=5))
def test_metadata_round_trips_exactly(node: Node, metadata: dict[str, Any]) -> None:
    m = node.memory.add("metadata carrier", metadata=metadata)
    node.memory.cache.clear()
    assert node.memory.get(m.id).metadata == metadata
    hit = node.memory.search("metadata carrier", mode="text", limit=1000)
    assert any(h.memory.metadata == metadata for h in hit)
