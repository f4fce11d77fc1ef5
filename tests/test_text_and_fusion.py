"""Word-query building (never an FTS5 syntax error) and score fusion."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import apsw
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cis import Node
from cis.index.fields import MIN_WEIGHT, bm25f, distance_weight, held, pairs
from cis.index.filters import Filters
from cis.index.hybrid import fuse, single
from cis.index.text import _counted, idf, match_query, node_terms, query_words, stems
from cis.index.timecue import Named
from cis.memory.context import RUN_ROW, Known, Lengths, Run, _taking_part, stretches, threads


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


def test_strong_words_and_meaning_fuse_as_z_scores() -> None:
    # 2 holds the query's words, 3 means most; with words trusted, words win
    words = {2: 0.9, 3: 0.1}
    meaning = {1: 0.1, 2: 0.3, 3: 0.4, 4: 0.2}
    fused = fuse([1, 2, 3, 4], words, words, meaning, trusted=True)
    assert [s.rid for s in fused][:2] == [2, 3]
    assert fused[0].text_score == 0.9 and fused[0].vector_score == 0.3


def test_weak_words_do_not_outweigh_meaning() -> None:
    """A memory sharing one stray word with a question asked in other words stays below
    the one that means what was asked."""
    words = {7: 0.2}  # one word of five
    meaning = {7: 0.1, 8: 0.45, 9: 0.15, 10: 0.12, 11: 0.14}
    fused = fuse(list(meaning), words, words, meaning, trusted=False)
    assert fused[0].rid == 8
    assert fuse(list(meaning), words, words, meaning, trusted=True)[0].rid == 7


def test_weak_words_of_a_memory_holding_one_query_word_do_not_count() -> None:
    """Under weak words a memory sharing one query word (with its thread) competes on
    meaning alone and does not say words matched; two different words still count."""
    meaning = {1: 0.60, 2: 0.62, 3: 0.2, 4: 0.1}
    words = {1: 0.29, 3: 0.29}
    fused = fuse(list(meaning), words, words, meaning, trusted=False, held={1: 1, 3: 2})
    assert fused[0].rid == 2
    one = next(s for s in fused if s.rid == 1)
    assert one.text_score is None and one.context_score is None
    assert next(s for s in fused if s.rid == 3).text_score == 0.29
    lifted = fuse(list(meaning), words, words, meaning, trusted=False, held={1: 2, 3: 2})
    assert lifted[0].rid == 1
    strong = fuse(list(meaning), words, words, meaning, trusted=True, held={1: 1, 3: 1})
    assert next(s for s in strong if s.rid == 1).text_score == 0.29  # strong words: all count


@given(
    counts=st.lists(st.lists(st.integers(0, 2), min_size=3, max_size=3), min_size=1, max_size=8),
    links=st.lists(st.floats(0, 1), min_size=7, max_size=7),
)
def test_a_memory_holds_the_words_it_or_a_lending_neighbour_holds(
    counts: list[list[int]], links: list[float]
) -> None:
    n = len(counts)
    tf = np.array(counts, dtype=np.float64)
    around = pairs(
        np.zeros(n, np.int64), np.zeros(n, np.int64), np.array(links[:n]), 1, np.full(n, False)
    )
    got = held(tf, around)
    for i in range(n):
        lenders = {int(j) for m, j in zip(*around[:2], strict=True) if m == i}
        words = {w for w in range(3) if tf[i, w] > 0 or any(tf[j, w] > 0 for j in lenders)}
        assert got[i] == len(words)


def test_a_memory_of_the_named_month_gets_more() -> None:
    meaning = {1: 0.40, 2: 0.38, 3: 0.1}
    fused = fuse([1, 2, 3], {}, {}, meaning, trusted=False, timely=frozenset({2}))
    assert fused[0].rid == 2 and fused[0].time_score == 1.0 and fused[1].time_score is None


def test_named_months_and_years() -> None:
    assert Named("What did Joanna do in May 2022?").months == {5}
    assert Named("What did Joanna do in May 2022?").years == {2022}
    assert not Named("May I ask what she may do?")  # the verb, not the month
    august = int(datetime(2023, 8, 16, tzinfo=UTC).timestamp() * 1000)
    assert Named("on 16 August, 2023").holds(august)
    assert not Named("in 2022").holds(august)


def test_single_signal_modes() -> None:
    assert [s.rid for s in single({1: 0.2, 2: 0.9}, words=True)] == [2, 1]
    vector = single({1: -0.5, 2: 0.4}, words=False)
    assert [(s.rid, s.score, s.text_score) for s in vector] == [(2, 0.4, None), (1, 0.0, None)]


@given(
    words=st.dictionaries(st.integers(0, 30), st.floats(0, 1)),
    meaning=st.dictionaries(st.integers(0, 30), st.floats(-1, 1)),
    trusted=st.booleans(),
    timely=st.frozensets(st.integers(0, 30)),
)
def test_fused_scores_are_bounded_and_sorted(
    words: dict[int, float], meaning: dict[int, float], trusted: bool, timely: frozenset[int]
) -> None:
    candidates = sorted(set(words) | set(meaning))
    fused = fuse(candidates, words, words, meaning, trusted=trusted, timely=timely)
    assert sorted(s.rid for s in fused) == candidates
    scores = [s.score for s in fused]
    assert all(0 <= s <= 1 for s in scores)
    assert [(s.score, -s.rid) for s in fused] == sorted(
        ((s.score, -s.rid) for s in fused), reverse=True
    )


def test_coverage_ranks_full_matches_first(node: Node) -> None:
    node.memory.add("the red kite nests in the old oak")
    node.memory.add("a red bicycle")
    node.memory.add("oak barrels age the wine")
    hits = node.memory.search("red kite oak", mode="text")
    assert hits[0].memory.text.startswith("the red kite")
    assert all(0 < h.score <= 1 for h in hits)
    assert hits[0].score > hits[1].score


def test_asking_for_more_hits_keeps_the_first_ones_in_order(node: Node) -> None:
    """Up to CANDIDATES hits, the limit only cuts the ranking: a search for 40 begins
    with the 10 a search for 10 gives, in every mode."""
    from cis.memory.search import CANDIDATES

    rng = np.random.default_rng(3)
    words = "river stone lamp garden winter letter violin harbour ladder copper".split()
    vectors = rng.normal(size=(300, 384)).astype(np.float32)
    node.memory.add_many(
        {"text": " ".join(rng.choice(words, 5)), "embedding": v, "scope": "project/p"}
        for v in vectors
    )
    node.memory.flush()
    query = vectors[7] + 0.5 * rng.normal(size=384).astype(np.float32)
    assert CANDIDATES >= 40  # the limits below share one pool
    for mode in ("hybrid", "vector", "text"):
        for scope in (None, "project/p"):
            ids = [
                [
                    h.memory.id
                    for h in node.memory.search(
                        "stone lamp winter", embedding=query, limit=n, mode=mode, scope=scope
                    )
                ]
                for n in (10, 40)
            ]
            assert len(ids[0]) == 10 and len(ids[1]) == 40
            assert ids[1][:10] == ids[0], (mode, scope)


def test_inferred_threads_stay_in_scope_and_time(node: Node) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    texts = ["the boat needs new sails", "we sail the boat at dawn", "boat sails are costly"]
    ids = [
        node.memory.add(texts[0], scope="project/a", event_at=t0).id,
        node.memory.add(texts[1], scope="project/b", event_at=t0).id,
        node.memory.add(texts[1], scope="project/a", event_at=t0 + timedelta(minutes=5)).id,
        node.memory.add(texts[2], scope="project/a", event_at=t0 + timedelta(days=3)).id,
    ]
    node.memory.flush()  # coherence needs the vectors
    with node.db.read() as conn:
        rid = {r[1]: r[0] for r in conn.execute("SELECT rid, id FROM memories")}
        found = threads(conn, node.memory.index, [rid[i] for i in ids])
    a0, b0, a1, a2 = (rid[i] for i in ids)
    assert found.neighbours(a0) == [a1]  # b0 is another scope; a2 is days later
    assert found.neighbours(a1) == [a0]
    assert found.neighbours(b0) == [] and found.neighbours(a2) == []


def test_explicit_threads_span_time_and_keep_to_themselves(node: Node) -> None:
    """A named thread (or a session scope) is one thread however far apart its memories
    are; a memory of it lends nothing to the unnamed memories beside it, nor they to it."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    add = node.memory.add
    ids = [
        add("the boat needs new sails", scope="project/a", thread="boat", event_at=t0).id,
        add("we sail the boat at dawn", scope="project/a", event_at=t0 + timedelta(minutes=1)).id,
        add(
            "sails are costly", scope="project/a", thread="boat", event_at=t0 + timedelta(days=3)
        ).id,
        add("the kite string snapped", scope="session/s", event_at=t0).id,
        add("I fixed it with tape", scope="session/s", event_at=t0 + timedelta(days=2)).id,
    ]
    node.memory.flush()
    with node.db.read() as conn:
        rid = {r[1]: r[0] for r in conn.execute("SELECT rid, id FROM memories")}
        found = threads(conn, node.memory.index, [rid[i] for i in ids])
    boat0, loose, boat1, kite, tape = (rid[i] for i in ids)
    assert found.neighbours(boat0) == [boat1] and found.neighbours(boat1) == [boat0]
    assert found.neighbours(loose) == []
    assert found.neighbours(kite) == [tape]  # unrelated words: a session is one thread
    assert node.memory.get(ids[0]).thread == "boat"


def test_an_answer_gets_its_questions_words_from_the_turn_before(node: Node) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    turns = [
        "Ana: did you ever get the sourdough starter going again?",
        "Ben: yes, it bubbles nicely now, I feed it every morning",
        "Ana: lovely. The weather is grim here today",
        "Ben: same here, rain all week",
    ]
    for n, text in enumerate(turns):
        node.memory.add(text, scope="session/chat1", event_at=t0 + timedelta(seconds=n))
    node.memory.flush()
    hits = node.memory.search("sourdough starter", scope="session/chat1", limit=4)
    reply = next(h for h in hits if h.memory.text.startswith("Ben: yes"))
    assert reply.text_score is None  # none of its own words were asked for
    assert reply.context_score is not None and reply.context_score > 0
    assert [h.memory.text for h in hits[:2]] == turns[:2]


def test_a_thread_known_from_an_earlier_search_takes_a_new_turn(node: Node) -> None:
    """Runs are kept between searches; a write drops them, so a turn added later lends
    its words at once."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    add = node.memory.add
    add("Ana: any luck with the sourdough starter?", scope="session/c", event_at=t0)
    add("Ana: the weather is grim", scope="session/c", event_at=t0 + timedelta(seconds=9))
    node.memory.flush()
    first = node.memory.search("sourdough starter", scope="session/c")
    assert all(h.memory.text.startswith("Ana") for h in first)
    later = t0 + timedelta(seconds=1)
    reply = add("Ben: it bubbles nicely now", scope="session/c", event_at=later).id
    node.memory.flush()
    hits = node.memory.search("sourdough starter", scope="session/c")
    found = next(h for h in hits if h.memory.id == reply)
    assert found.context_score is not None and found.context_score > 0


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.lists(st.integers(0, 5), min_size=2, max_size=2), min_size=1, max_size=12),
    links=st.lists(st.floats(-1, 1), min_size=11, max_size=11),
    gap_ms=st.integers(0, 3_600_000),
    timed=st.booleans(),
)
def test_thread_words_are_bounded_and_only_add_from_coherent_neighbours(
    counts: list[list[int]], links: list[float], gap_ms: int, timed: bool
) -> None:
    n = len(counts)
    tf = np.array(counts, dtype=np.float64)
    lengths = tf.sum(axis=1) + 3
    idf = np.array([1.5, 0.7])
    times = [k * gap_ms for k in range(n)]
    runs = np.array([k >= n // 2 + 1 for k in range(n)], dtype=np.int64)  # two runs
    around = pairs(runs, np.array(times), np.array(links[:n]), 30 * 60 * 1000, np.full(n, timed))
    own, with_thread = bm25f(idf, float(idf.sum()), tf, lengths, around)
    assert ((own >= 0) & (own <= 1)).all() and ((with_thread >= 0) & (with_thread <= 1)).all()
    assert (around[2] > MIN_WEIGHT).all()  # incoherent or distant neighbours lend nothing
    assert (runs[around[0]] == runs[around[1]]).all()  # nor do other runs' memories
    alone = bm25f(idf, float(idf.sum()), tf, lengths, tuple(a[:0] for a in around))  # type: ignore[arg-type]
    assert np.allclose(alone[0], alone[1]) and np.allclose(alone[0], own)
    if (timed and gap_ms > 30 * 60 * 1000) or all(c <= 0 for c in links[: n - 1]):
        assert len(around[0]) == 0  # an explicit thread (not timed) spans any time
    elif not timed and n >= 2 and links[0] * distance_weight(1) > MIN_WEIGHT:
        assert len(around[0]) > 0


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    triples=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=40),
    hits=st.sets(st.integers(0, 29), max_size=10),
)
def test_only_the_memories_taking_part_stay_in_a_thread(
    n: int, triples: list[tuple[int, int]], hits: set[int]
) -> None:
    members = np.array([100 + 7 * k for k in range(n)], dtype=np.int64)
    kept = [(a, b) for a, b in triples if a < n and b < n]
    around = (
        np.array([a for a, _ in kept], dtype=np.int64),
        np.array([b for _, b in kept], dtype=np.int64),
        np.arange(1, len(kept) + 1, dtype=np.float64),
    )
    hit_rids = {int(members[h]) for h in hits if h < n}
    found = _taking_part(members, np.array(sorted(hit_rids), dtype=np.int64), around)
    lending = {int(members[a]) for a, _ in kept} | {int(members[b]) for _, b in kept}
    assert set(found.rids) == hit_rids | lending
    assert found.rids == sorted(found.rids)  # the thread's order is kept
    mine, theirs, weight = found.around
    assert [(found.rids[a], found.rids[b]) for a, b in zip(mine, theirs, strict=True)] == [
        (members[a], members[b]) for a, b in kept
    ]
    assert weight.tolist() == around[2].tolist()


def test_a_word_count_above_the_total_is_no_domain_error() -> None:
    """A cached or newer count of a word's memories may exceed this snapshot's total."""
    assert idf(5, 9) == idf(5, 5) == 1e-6


def test_node_wide_word_counts_are_fts5s(node: Node) -> None:
    """Counted from the hits' text (tokenized as FTS5 does), they equal FTS5's own."""
    node.memory.add("E-mail the e-mail team: emails bounce", tags=["e-mail", "ops"])
    node.memory.add("Running late; the runner runs", tags=["running"])
    node.memory.add("nothing relevant here")
    query = "e-mail running ops"
    with node.db.read() as conn:
        mine = node_terms(conn, query, Filters(), 10)
        theirs = _counted(
            conn,
            "SELECT rowid, cis_terms(memories_fts), 1 FROM memories_fts WHERE memories_fts MATCH ?",
            [match_query(mine.words)],
            mine.words,
            mine.idf,
            mine.full,
            mine.asked,
        )
    assert mine.counts == theirs.counts and mine.lengths == theirs.lengths
    assert len(mine.counts) == 2


def _joined_by_hand(runs: list[Run]) -> list[tuple[int, int, int, bool, float]]:
    """Runs joined by following each memory's successor from each first memory (those
    no run puts after another), firsts by rowid: (memory, stretch, time, explicit, link)."""
    after, time_of, link_of, explicit = {}, {}, {}, set()
    for run in runs:
        rows = np.frombuffer(run.rows, RUN_ROW).tolist()
        members = [m for m, _, _ in rows]
        after.update(itertools.pairwise(members))
        time_of.update((m, t) for m, t, _ in rows)
        link_of.update((m, x) for m, _, x in rows[:-1])
        if run.explicit:
            explicit.update(members)
    out = []
    for n, start in enumerate(sorted(time_of.keys() - set(after.values()))):
        m = start
        while True:
            out.append((m, n, time_of[m], m in explicit, link_of.get(m, 0.0)))
            if m not in after:
                break
            m = after[m]
    return out


@settings(max_examples=200, deadline=None)
@given(
    threads_=st.lists(st.tuples(st.integers(1, 25), st.booleans()), min_size=1, max_size=4),
    windows=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 24), st.integers(1, 9)), max_size=12
    ),
    seed=st.integers(0, 2**16),
)
def test_runs_join_into_the_stretches_of_their_threads(
    threads_: list[tuple[int, bool]], windows: list[tuple[int, int, int]], seed: int
) -> None:
    """Windows of a few threads (rowids interleaved across threads, as a store's are),
    overlapping or not, join into maximal stretches as following successors by hand does."""
    rng = np.random.default_rng(seed)
    rids = rng.permutation(1000)[: sum(size for size, _ in threads_)].tolist()
    order, at = [], 0
    for size, _ in threads_:
        order.append(rids[at : at + size])
        at += size
    runs = []
    for which, start, length in windows:
        thread = order[which % len(order)]
        part = thread[start % len(thread) : start % len(thread) + length]
        rows = np.zeros(len(part), RUN_ROW)
        rows["member"] = part
        rows["time"] = [1000 * thread.index(m) for m in part]
        rows["link"][:-1] = [0.01 * (m % 97) for m in part[:-1]]
        runs.append(Run(rows.tobytes(), threads_[which % len(order)][1]))
    joined = stretches(runs)
    assert list(
        zip(
            joined.members.tolist(),
            joined.segments.tolist(),
            joined.times.tolist(),
            joined.explicit.tolist(),
            joined.links.tolist(),
            strict=True,
        )
    ) == [(m, n, t, e, x) for m, n, t, e, x in _joined_by_hand(runs)]


def test_lengths_read_once_are_known_by_rowid(node: Node) -> None:
    """From FTS5's docsize table the first time, from the array after; 0 for a memory
    without words, and a rowid past the array's reach is read each time."""
    a = node.memory.add("three words here")
    b = node.memory.add("two words", tags=["x"])
    node.memory.flush()
    with node.db.read() as conn:
        rid = {
            i: int(r)
            for i, r in conn.execute(
                "SELECT id, rid FROM memories WHERE id IN (?, ?)", (a.id, b.id)
            )
        }
        known = Lengths()
        assert known.of(conn, [rid[a.id], rid[b.id], 10**9]).tolist() == [3.0, 3.0, 0.0]
        known.put({rid[a.id]: 7.0})
        assert known.of(conn, [rid[a.id]]).tolist() == [7.0]
        assert known.of(conn, [10**9]).tolist() == [0.0]


def test_past_its_capacity_known_keeps_the_newer_half(node: Node) -> None:
    kept = node.memory.add("the kayak is in the garage")
    known = Known(capacity=4)
    with node.db.read() as conn:
        seen = known.at(conn, node.memory.index, 0)
        seen.columns.update({r: ((), ()) for r in range(6)})
        assert known.at(conn, node.memory.index, 0) is seen and list(seen.columns) == [3, 4, 5]
    node.memory.update(kept.id, "the kayak is in the shed")
    with node.db.read() as conn:
        assert not known.at(conn, node.memory.index, 0).columns  # an edit: nothing known
