"""Word search over the FTS5 index (BM25), with the query turned into safe FTS5 syntax."""

from __future__ import annotations

import re

import apsw

from .filters import Filters

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)


def match_query(text: str) -> str | None:
    """An FTS5 MATCH expression: the query's words (stopwords dropped) OR-ed, each quoted."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    unique = list(dict.fromkeys(kept))
    if not unique:
        return None
    return " OR ".join(f'"{w}"' for w in unique)


def text_search(
    conn: apsw.Connection, query: str, filters: Filters, limit: int
) -> list[tuple[int, float]]:
    """Up to `limit` (rowid, bm25) pairs, best first; bm25 here is positive, higher is better."""
    expr = match_query(query)
    if expr is None:
        return []
    where, params = filters.where("m")
    sql = (
        "SELECT m.rid, -bm25(memories_fts, 1.0, 0.5) AS s FROM memories_fts "
        "JOIN memories m ON m.rid = memories_fts.rowid "
        f"WHERE memories_fts MATCH ? AND {where} ORDER BY s DESC LIMIT ?"
    )
    return [(int(r), float(s)) for r, s in conn.execute(sql, [expr, *params, limit])]
