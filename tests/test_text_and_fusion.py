"""Word-query building (never an FTS5 syntax error) and score fusion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import apsw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cis import Node
from cis.index.hybrid import WORD_WEIGHT, fuse, own_score, single
from cis.index.text import match_query, query_words, stems
from cis.memory.neighbours import neighbours


def test_stopwords_are_dropped_unless_nothing_is_left() -> None:
    assert query_words("What database does billing use? Billing!") == ["database", "billing", "use"]
    assert query_words("what is it") == ["what", "is", "it"]
    assert match_query(query_words("?!  ...")) is None
    assert match_query(["a", "b"]) == '"a" OR "b"'


def test_stems_match_the_index_tokenizer() -> None:
    assert stems("Running") == ["run"]
    assert stems("généralement") == ["general"]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80))
def test_any_text_gives_a_valid_fts5_query(text: str) -> None:
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(t, tokenize='porter unicode61')")
    conn.execute("INSERT INTO f VALUES ('some words here')")
    expr = match_query(query_words(text))
    if expr is not None:
        conn.execute("SELECT * FROM f WHERE f MATCH ?", (expr,)).fetchall()


def test_own_score_squares_word_coverage() -> None:
    assert own_score(1.0, 1.0, 0.6) == 1.0
    assert own_score(0.5, None, 0.6) == 0.6 * 0.25
    assert own_score(None, -0.3, 0.6) == 0.0  # negative cosine counts as no meaning
    assert own_score(None, 0.8, 0.6) == pytest.approx(0.4 * 0.8)


def test_context_lifts_an_answer_next_to_its_question() -> None:
    # 2 holds the query's words; 3 (its reply) holds neither, but stands next to it
    words = {2: 1.0}
    meaning = {1: 0.1, 2: 0.3, 3: 0.34, 4: 0.35}
    alone = {s.rid: s for s in fuse([1, 3, 4], words, meaning)}
    assert alone[4].score > alone[3].score
    with_context = {s.rid: s for s in fuse([1, 3, 4], words, meaning, {3: [2], 4: [1]})}
    assert with_context[3].score > with_context[4].score
    assert with_context[3].context_score == pytest.approx(own_score(1.0, 0.3, WORD_WEIGHT))


def test_single_signal_modes() -> None:
    assert [s.rid for s in single({1: 0.2, 2: 0.9}, words=True)] == [2, 1]
    vector = single({1: -0.5, 2: 0.4}, words=False)
    assert [(s.rid, s.score, s.text_score) for s in vector] == [(2, 0.4, None), (1, 0.0, None)]


@given(
    words=st.dictionaries(st.integers(0, 30), st.floats(0, 1)),
    meaning=st.dictionaries(st.integers(0, 30), st.floats(-1, 1)),
    links=st.dictionaries(st.integers(0, 30), st.lists(st.integers(0, 30), max_size=4)),
    weight=st.floats(0, 1),
)
def test_fused_scores_are_bounded_and_sorted(
    words: dict[int, float], meaning: dict[int, float], links: dict[int, list[int]], weight: float
) -> None:
    candidates = sorted(set(words) | set(meaning))
    fused = fuse(candidates, words, meaning, links, word_weight=weight)
    assert sorted(s.rid for s in fused) == candidates
    scores = [s.score for s in fused]
    assert all(-1e-9 <= s <= 1 + 1e-9 for s in scores)
    assert scores == sorted(scores, reverse=True)


def test_coverage_ranks_full_matches_first(node: Node) -> None:
    node.memory.add("the red kite nests in the old oak")
    node.memory.add("a red bicycle")
    node.memory.add("oak barrels age the wine")
    hits = node.memory.search("red kite oak", mode="text")
    assert hits[0].memory.text.startswith("the red kite")
    assert all(0 < h.score <= 1 for h in hits)
    assert hits[0].score > hits[1].score


def test_neighbours_stay_in_scope_and_time(node: Node) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ids = [
        node.memory.add("a0", scope="session/a", event_at=t0).id,
        node.memory.add("b0", scope="session/b", event_at=t0).id,
        node.memory.add("a1", scope="session/a", event_at=t0 + timedelta(minutes=5)).id,
        node.memory.add("a2", scope="session/a", event_at=t0 + timedelta(days=3)).id,
    ]
    with node.db.read() as conn:
        rid = {r[1]: r[0] for r in conn.execute("SELECT rid, id FROM memories")}
        around = neighbours(conn, [rid[i] for i in ids])
    a0, b0, a1, a2 = (rid[i] for i in ids)
    assert around[a0] == [a1]  # b0 is another scope; a2 is days later
    assert around[a1] == [a0]
    assert around[b0] == [] and around[a2] == []
