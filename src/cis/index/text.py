"""Word search over the FTS5 index (BM25), with the query turned into safe FTS5 syntax.

BM25 ranking costs time for every memory that matches any query word, and a word found in
a large share of memories adds little to the ranking (low IDF). So a query keeps its rarest
words, as long as the memories they match together stay within SCORED_DOCS_BUDGET (the
rarest is always kept); memories matching only the dropped common words can still be
found by meaning.
"""

from __future__ import annotations

import math
import re
import threading

import apsw
import msgspec

from ..store.sqlite import scalar
from .filters import Filters

TOKENIZER = ("porter", ["unicode61", "remove_diacritics", "2"])
SCORED_DOCS_BUDGET = 4000
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have he her
    hers him his how i if in into is it its me my no not of on or our she so than that the
    their them then there these they this those to too us was we were what when where which
    who whom why will with would you your yours""".split()
)
_stemmer: apsw.FTS5Tokenizer | None = None
_stemmer_lock = threading.Lock()


def stems(word: str) -> list[str]:
    """The index terms FTS5 makes of `word` (porter stems, diacritics removed)."""
    global _stemmer
    with _stemmer_lock:
        if _stemmer is None:
            _stemmer = apsw.Connection(":memory:").fts5_tokenizer(*TOKENIZER)
        tokens = _stemmer(
            word.encode("utf-8"), apsw.FTS5_TOKENIZE_QUERY, None, include_offsets=False
        )
    return [str(t[0]) for t in tokens]


def query_words(text: str) -> list[str]:
    """The query's distinct words, lower-cased, stopwords dropped (unless nothing is left)."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))


def match_query(words: list[str]) -> str | None:
    """An FTS5 MATCH expression: the words OR-ed, each quoted (so never a syntax error)."""
    return " OR ".join(f'"{w}"' for w in words) if words else None


def idf(total: int, containing: int) -> float:
    """FTS5's BM25 inverse document frequency (never below its floor of 1e-6)."""
    return max(1e-6, math.log((total - containing + 0.5) / (containing + 0.5)))


class WordQuery(msgspec.Struct, frozen=True):
    """The words to search for, and the BM25 a memory holding every query word once would
    get (the sum of their IDFs), which scales a hit's BM25 to [0, 1]."""

    words: list[str]
    full_score: float


def plan(conn: apsw.Connection, text: str, budget: int = SCORED_DOCS_BUDGET) -> WordQuery:
    """Keep the words that occur, rarest first, while the memories they match fit the budget."""
    words = query_words(text)
    term_of = {w: stems(w) for w in words}
    terms = sorted({t for ts in term_of.values() for t in ts})
    counts: dict[str, int] = {}
    if terms:
        marks = ",".join("?" * len(terms))
        rows = conn.execute(f"SELECT term, doc FROM memories_vocab WHERE term IN ({marks})", terms)
        counts = {str(term): int(doc) for term, doc in rows}
    total = max(1, int(scalar(conn, "SELECT count(*) FROM memories")))
    frequency = {w: max((counts.get(t, 0) for t in ts), default=0) for w, ts in term_of.items()}
    kept: list[str] = []
    matched = 0
    for count, word in sorted((f, w) for w, f in frequency.items() if f > 0):
        if kept and matched + count > budget:
            break
        kept.append(word)
        matched += count
    full = sum(idf(total, f) for f in frequency.values())
    return WordQuery(kept, full)


def text_search(
    conn: apsw.Connection, query: str, filters: Filters, limit: int
) -> list[tuple[int, float]]:
    """Up to `limit` (rowid, score) pairs, best first; the score is the memory's BM25 over
    the query's full score, clipped to [0, 1]: how much of the query's words it holds."""
    planned = plan(conn, query)
    expr = match_query(planned.words)
    if expr is None or planned.full_score <= 0:
        return []
    where, params = filters.where("m")
    sql = (
        "SELECT m.rid, -bm25(memories_fts, 1.0, 0.5) AS s FROM memories_fts "
        "JOIN memories m ON m.rid = memories_fts.rowid "
        f"WHERE memories_fts MATCH ? AND {where} ORDER BY s DESC LIMIT ?"
    )
    return [
        (int(r), min(1.0, float(s) / planned.full_score))
        for r, s in conn.execute(sql, [expr, *params, limit])
    ]
