"""Word-query building (never an FTS5 syntax error) and score fusion."""

from __future__ import annotations

import apsw
from hypothesis import given, settings
from hypothesis import strategies as st

from cis.index.hybrid import fuse
from cis.index.text import match_query, query_words, stems


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


def test_fusion_weights_and_ranges() -> None:
    text_hits = [(1, 8.0), (2, 4.0)]
    sims = {1: 0.2, 2: 0.9, 3: 0.95, 4: -0.3}
    fused = {s.rid: s for s in fuse(text_hits, sims, text_weight=0.5)}
    assert fused[1].text_score == 1.0 and fused[2].text_score == 0.5
    assert fused[3].text_score is None and fused[4].vector_score == 0.0
    assert fused[2].score == 0.5 * 0.5 + 0.5 * 0.9
    assert all(0 <= s.score <= 1 for s in fused.values())


@given(
    text_hits=st.lists(st.tuples(st.integers(0, 50), st.floats(0, 100)), unique_by=lambda t: t[0]),
    sims=st.dictionaries(st.integers(0, 50), st.floats(-1, 1)),
    weight=st.floats(0, 1),
)
def test_fused_scores_are_bounded_and_sorted(
    text_hits: list[tuple[int, float]], sims: dict[int, float], weight: float
) -> None:
    fused = fuse(text_hits, sims, text_weight=weight)
    assert {s.rid for s in fused} == {r for r, _ in text_hits} | set(sims)
    scores = [s.score for s in fused]
    assert all(-1e-9 <= s <= 1 + 1e-9 for s in scores)
    assert scores == sorted(scores, reverse=True)
