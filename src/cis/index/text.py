"""Word search over the FTS5 index (BM25), with the query turned into safe FTS5 syntax.

Over the whole node, BM25 is FTS5's own, with the node's statistics. BM25 ranking costs
time for every memory that matches any query word, and a word found in a large share of
memories adds little to the ranking (low IDF). So a query keeps its rarest words, as
long as the memories they match together stay within SCORED_DOCS_BUDGET (the rarest is
always kept); memories matching only the dropped common words can still be found by
meaning.

Within one scope, every statistic comes from that scope alone (its memory count, how
many of its memories hold each word, the length of its matching memories), so what other
scopes hold moves no score of it: a token limited to a scope learns nothing of the rest.
"""

from __future__ import annotations

import math
import re
import struct
import sys
import threading
import weakref
from typing import Any

import apsw
import msgspec
import numpy as np

from ..cache import ShardedCache
from ..store.sqlite import marks, scalar
from .fields import saturated
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
_tag_list = msgspec.json.Decoder(list[str])  # memories.tags as stored
_stemmer: apsw.FTS5Tokenizer | None = None
_stemmer_lock = threading.Lock()


def _tokens(text: str, reason: int) -> list[str]:
    global _stemmer
    with _stemmer_lock:
        if _stemmer is None:
            _stemmer = apsw.Connection(":memory:").fts5_tokenizer(*TOKENIZER)
        tokens = _stemmer(text.encode("utf-8"), reason, None, include_offsets=False)
    return [str(t[0]) for t in tokens]


def stems(word: str) -> list[str]:
    """The index terms FTS5 makes of `word` (porter stems, diacritics removed)."""
    return _tokens(word, apsw.FTS5_TOKENIZE_QUERY)


def _occurrences(tokens: tuple[str, ...], phrase: list[str]) -> int:
    """How often `phrase` (a word's index terms) stands in `tokens`, as FTS5 counts it."""
    n = len(phrase)
    if n == 1:
        return tokens.count(phrase[0])
    wanted = tuple(phrase)
    return sum(1 for i in range(len(tokens) - n + 1) if tokens[i : i + n] == wanted)


def query_words(text: str) -> list[str]:
    """The query's distinct words, lower-cased, stopwords dropped (unless nothing is left)."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))


def match_query(words: list[str]) -> str | None:
    """An FTS5 MATCH expression: the words OR-ed, each quoted (so never a syntax error)."""
    return " OR ".join(f'"{w}"' for w in words) if words else None


def idf(total: int, containing: int) -> float:
    """FTS5's BM25 inverse document frequency (never below its floor of 1e-6). A count
    read in a newer snapshot (or cached) may exceed `total`: it counts as all of them."""
    containing = min(containing, total)
    return max(1e-6, math.log((total - containing + 0.5) / (containing + 0.5)))


class WordQuery(msgspec.Struct, frozen=True):
    """The words to search for, each one's index terms and IDF, and the BM25 a memory
    holding every query word once would get (the sum of their IDFs), which scales a
    hit's BM25 to [0, 1]."""

    words: list[str]
    full_score: float
    terms: list[list[str]]
    idf: list[float]


def term_counts(
    conn: apsw.Connection, terms: list[str], cache: ShardedCache[int] | None
) -> dict[str, int]:
    """How many memories hold each index term. FTS5 counts by walking a term's whole
    posting list, as costly as matching it, so counts are cached for the cache's TTL and
    not dropped on writes: a count off by a few changes a word's weight by next to nothing.
    A count of 0 is not cached: the word would be left out of the search until it expired."""
    counts: dict[str, int] = {}
    missing = []
    for term in terms:
        known = None if cache is None else cache.get("df|" + term)
        if known is None:
            missing.append(term)
        else:
            counts[term] = known
    if missing:
        listed, values = marks(missing)
        sql = f"SELECT term, doc FROM memories_vocab WHERE term IN ({listed})"
        rows = conn.execute(sql, values)
        found = {str(term): int(doc) for term, doc in rows}
        for term in missing:
            counts[term] = found.get(term, 0)
            if cache is not None and counts[term]:
                cache.set("df|" + term, counts[term])
    return counts


def plan(
    conn: apsw.Connection,
    text: str,
    budget: int = SCORED_DOCS_BUDGET,
    cache: ShardedCache[int] | None = None,
) -> WordQuery:
    """Keep the words that occur, rarest first, while the memories they match fit the budget."""
    words = query_words(text)
    term_of = {w: stems(w) for w in words}
    counts = term_counts(conn, sorted({t for ts in term_of.values() for t in ts}), cache)
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
    return WordQuery(
        kept, full, [term_of[w] for w in kept], [idf(total, frequency[w]) for w in kept]
    )


def text_search(
    conn: apsw.Connection,
    query: str,
    filters: Filters,
    limit: int,
    cache: ShardedCache[int] | None = None,
    planned: WordQuery | None = None,
) -> list[tuple[int, float]]:
    """Up to `limit` (rowid, score) pairs, best first; the score is the memory's BM25 over
    the query's full score, clipped to [0, 1]: how much of the query's words it holds."""
    planned = planned or plan(conn, query, cache=cache)
    expr = match_query(planned.words)
    if expr is None or planned.full_score <= 0:
        return []
    if filters.empty:
        # the index holds live memories only (cis.memory.apply takes a row's words out
        # as it dies), so no row of the table need be read: at 100k, 0.78 against 2.0 ms
        sql = (
            "SELECT rowid, -bm25(memories_fts, 1.0, 0.5) AS s FROM memories_fts "
            "WHERE memories_fts MATCH ? ORDER BY s DESC LIMIT ?"
        )
        params: list[object] = []
    else:
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


COLUMN_WEIGHTS = (1.0, 0.5)  # text, tags: as bm25(memories_fts, 1.0, 0.5) weighs them
_registered: weakref.WeakSet[apsw.Connection] = weakref.WeakSet()


def _terms(api: apsw.FTS5ExtensionApi, *args: apsw.SQLiteValue) -> bytes:
    """FTS5 auxiliary function: a matching row's length, then each phrase's weighted
    count in it, as float64s."""
    counts: list[float] = [api.column_size(-1)]
    for phrase in range(api.phrase_count):
        where = api.phrase_locations(phrase)
        counts.append(sum(w * len(hits) for w, hits in zip(COLUMN_WEIGHTS, where, strict=False)))
    return struct.pack(f"{len(counts)}d", *counts)


def _registered_on(conn: apsw.Connection) -> apsw.Connection:
    if conn not in _registered:
        conn.register_fts5_function("cis_terms", _terms)
        _registered.add(conn)
    return conn


SCOPED_DOCS_BUDGET = 1000  # memories scored in Python for one scoped search, at most


def _scope_count(conn: apsw.Connection, word: str, scope: str, cap: int) -> int:
    """How many live memories of `scope` hold `word`, counted up to `cap` + 1."""
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM (SELECT 1 FROM memories_fts JOIN memories m"
            " ON m.rid = memories_fts.rowid WHERE memories_fts MATCH ? AND m.scope = ?"
            " AND m.deleted = 0 LIMIT ?)",
            (f'"{word}"', scope, cap + 1),
        )
    )


class Terms(msgspec.Struct, frozen=True):
    """The word hits of one query: the words searched, each one's IDF, the query's full
    score, and for each memory found its length and how often it holds each word."""

    words: list[str]
    idf: list[float]
    full: float
    asked: int  # how many distinct words the query has (stopwords aside)
    lengths: dict[int, float]
    counts: dict[int, tuple[float, ...]]

    def scores(self) -> list[tuple[int, float]]:
        """BM25 over the full score, in [0, 1], best first; the mean length of the
        memories found stands for the typical one."""
        if not self.counts or self.full <= 0:
            return []
        mean_length = max(1.0, sum(self.lengths.values()) / len(self.lengths))
        rids = list(self.counts)
        scores = saturated(
            np.array([self.counts[r] for r in rids], dtype=np.float64).reshape(len(rids), -1),
            np.array([self.lengths[r] for r in rids]),
            np.asarray(self.idf),
            mean_length,
        )
        scored = [(r, min(1.0, v / self.full)) for r, v in zip(rids, scores.tolist(), strict=True)]
        scored.sort(key=lambda item: (-item[1], item[0]))
        return scored

    def held(self, rid: int) -> int:
        """How many of the query's words the memory holds."""
        return sum(1 for f in self.counts.get(rid, ()) if f)


def _counted(
    conn: apsw.Connection,
    sql: str,
    params: list[Any],
    words: list[str],
    idf: list[float],
    full: float,
    asked: int,
) -> Terms:
    """Terms from rows of (rowid, cis_terms(...), passes the filters)."""
    lengths: dict[int, float] = {}
    counts: dict[int, tuple[float, ...]] = {}
    for rid, blob, passes in _registered_on(conn).execute(sql, params):
        if passes:
            found = struct.unpack(f"{len(words) + 1}d", blob)
            lengths[int(rid)] = found[0]
            counts[int(rid)] = found[1:]
    return Terms(words, idf, full, asked, lengths, counts)


def _none(asked: int) -> Terms:
    return Terms([], [], 0.0, asked, {}, {})


Columns = tuple[tuple[str, ...], tuple[str, ...]]  # a memory's index terms: text, tags


def columns_of(conn: apsw.Connection, rids: list[int]) -> dict[int, Columns]:
    """The index terms of each memory of `rids`, tokenized as FTS5 did (a contentless
    index keeps no counts that can be read for a few rows without walking every posting
    of the words). Terms are interned: many memories hold the same ones."""

    def terms(text: str) -> tuple[str, ...]:
        return tuple(map(sys.intern, _tokens(text, apsw.FTS5_TOKENIZE_DOCUMENT)))

    listed, values = marks(rids)
    return {
        int(rid): (terms(str(text)), terms(" ".join(_tag_list.decode(tags))))
        for rid, text, tags in conn.execute(
            f"SELECT rid, text, tags FROM memories WHERE rid IN ({listed})", values
        )
    }


def node_terms(
    conn: apsw.Connection,
    query: str,
    filters: Filters,
    limit: int,
    cache: ShardedCache[int] | None = None,
    known: dict[int, Columns] | None = None,
) -> Terms:
    """The `limit` best word hits over the whole node (FTS5's BM25, the node's
    statistics), with their word counts. `known` holds the index terms of memories read
    before (and takes those read now)."""
    asked = len(query_words(query))
    planned = plan(conn, query, cache=cache)
    expr = match_query(planned.words)
    if expr is None or planned.full_score <= 0:
        return _none(asked)
    found = [rid for rid, _ in text_search(conn, query, filters, limit, cache, planned)]
    if not found:
        return _none(asked)
    known = {} if known is None else known
    missing = [rid for rid in found if rid not in known]
    if missing:
        known.update(columns_of(conn, missing))
    lengths: dict[int, float] = {}
    held: dict[int, tuple[float, ...]] = {}
    in_text, in_tags = COLUMN_WEIGHTS
    for rid in found:
        columns = known.get(rid)
        if columns is None:  # a hit whose row the read above did not return
            continue
        text, tags = columns
        lengths[rid] = float(len(text) + len(tags))
        held[rid] = tuple(
            in_text * _occurrences(text, terms) + in_tags * _occurrences(tags, terms)
            for terms in planned.terms
        )
    return Terms(planned.words, planned.idf, planned.full_score, asked, lengths, held)


def scoped_terms(conn: apsw.Connection, query: str, filters: Filters) -> Terms:
    """The word hits within `filters.scope`, with that scope's statistics: N its live
    memories, each word's document frequency among them, and as the typical length the
    mean length of its memories that match (the scope's own lengths are not kept apart).
    The words searched are the query's rarest in the scope while the memories they
    match stay within SCOPED_DOCS_BUDGET; a word held by more of the scope's memories
    than that is not searched (it weighs next to nothing)."""
    assert filters.scope is not None
    words = query_words(query)
    if not words:
        return _none(0)
    counts = {w: _scope_count(conn, w, filters.scope, SCOPED_DOCS_BUDGET) for w in words}
    kept: list[str] = []
    matched = 0
    for count, word in sorted((c, w) for w, c in counts.items() if c > 0):
        if matched + count > SCOPED_DOCS_BUDGET:
            break
        kept.append(word)
        matched += count
    live = "SELECT count(*) FROM memories WHERE scope = ? AND deleted = 0"
    total = max(1, int(scalar(conn, live, (filters.scope,))))
    full = sum(idf(total, c) for c in counts.values())
    expr = match_query(kept)
    if expr is None or full <= 0:
        return _none(len(words))
    where, params = filters.where("m")
    sql = (
        f"SELECT m.rid, cis_terms(memories_fts), ({where}) FROM memories_fts "
        "JOIN memories m ON m.rid = memories_fts.rowid "
        "WHERE memories_fts MATCH ? AND m.scope = ? AND m.deleted = 0"
    )
    weights = [idf(total, counts[w]) for w in kept]
    return _counted(conn, sql, [*params, expr, filters.scope], kept, weights, full, len(words))


def scoped_search(
    conn: apsw.Connection, query: str, filters: Filters, limit: int
) -> list[tuple[int, float]]:
    """`text_search` within `filters.scope`, scored by BM25 over that scope's statistics
    (see scoped_terms)."""
    return scoped_terms(conn, query, filters).scores()[:limit]
