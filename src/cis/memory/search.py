"""A search's stages: word hits with their threads' words (BM25F) and vector candidates,
read together, fused, filtered, and cached until a write can change them."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import apsw
import msgspec
import numpy as np

from ..cache import ShardedCache
from ..index import text as text_index
from ..index.centred import Meaning, nearest
from ..index.embed import Embedder, QueryBatcher
from ..index.fields import bm25f, held
from ..index.filters import Filters
from ..index.hybrid import Scored, fuse, single, strong
from ..index.timecue import Named
from ..index.vectors import VectorIndex
from ..model import Hit
from ..store.sqlite import Database, marks
from . import cachekeys
from .context import Known, Seen, threads
from .freshness import Freshness
from .order import Carried, Orders
from .rows import COLUMNS, to_memory

# each signal's pool before fusion: this many, or the limit if larger. Not a multiple of
# the limit, so that up to this many hits a larger limit only cuts the ranking further on
# (a search for 25 begins with the 10 a search for 10 gives); the standardised scores and
# the centred meaning are taken over the pool, so a pool that grew with the limit
# reordered the first hits (LoCoMo dev, recall@10 from a search for 25: 0.8096 with five
# times the limit, 0.8167 with this, which a search for 10 got either way)
CANDIDATES = 50


class WordSignals(msgspec.Struct, frozen=True):
    """The word signals of a hybrid search, by rowid: each memory's own score, its score
    with its thread (BM25F), how many of the query's words it holds with its thread; and
    whether the words are strong evidence (the best word hit holds at least TRUSTED of
    the query's words); and how many runs it read from SQL."""

    own: dict[int, float]
    words: dict[int, float]
    held: dict[int, int]
    trusted: bool
    read: int = 0  # runs read from SQL


NO_WORDS = WordSignals({}, {}, {}, False)


def _positive(rids: list[int], values: np.ndarray) -> dict[int, float]:
    """The rowids of `rids` whose value (same position) is above 0, with it."""
    keep = np.flatnonzero(values > 0)
    return dict(zip(np.asarray(rids)[keep].tolist(), values[keep].tolist(), strict=True))


class Searcher:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        index: VectorIndex,
        cache: ShardedCache[Any],
        fresh: Freshness,
    ):
        self.db = db
        self.embedder = embedder
        self.index = index
        self.cache = cache
        self.fresh = fresh
        self.queries = QueryBatcher(embedder)
        self.known = Known()
        self.orders = Orders(db, index, fresh)
        self._warm: Future[np.ndarray] | None = None
        self._one_at_a_time = threading.Lock()
        self._expected: dict[str, Future[np.ndarray]] = {}  # queries embedding ahead
        self._expected_lock = threading.Lock()

    def run(
        self, query: str, qvec: np.ndarray | None, flt: Filters, limit: int, mode: str
    ) -> list[Hit]:
        self.fresh.refresh(vectors=mode != "text")
        cache_key = None
        if qvec is None:
            cache_key = cachekeys.compound(
                "s", self.fresh.scope_token(flt.scope), limit, mode, flt, query
            )
            cached = self.cache.get(cache_key)
            if cached is not None:
                return cached  # type: ignore[no-any-return]
        with self._one_at_a_time:
            hits = self._search(query, qvec, flt, limit, mode)
        if cache_key is not None:
            self.cache.set(cache_key, hits)
        return hits

    def _search(
        self, query: str, qvec: np.ndarray | None, flt: Filters, limit: int, mode: str
    ) -> list[Hit]:
        pool = max(CANDIDATES, limit)
        words: dict[int, float] = {}
        sims: dict[int, float] = {}
        meaning: Meaning | None = None
        with self.db.read() as conn:
            before = self.orders.at(self.known)  # the order of the state known until now
            known = self.known.at(conn, self.index, self.fresh.logged, before)
            order = self.orders.at(self.known)
            embedding = None
            if mode != "text" and qvec is None:  # embedded on the batcher's thread meanwhile
                embedding = self._query_vector(query)
            if mode == "text" and query.strip():
                words = dict(
                    text_index.text_search(conn, query, flt, pool, self.cache)
                    if flt.scope is None
                    else text_index.scoped_search(conn, query, flt, pool)
                )
            words_found = None
            if mode == "hybrid" and query.strip():  # while the query still embeds
                words_found = self._words(conn, query, flt, pool, known, order)
                if order is None:
                    self.orders.note_read(conn, self.known, words_found.read)
            if mode != "text":
                allowed = None if flt.empty else self._allowed(conn, flt)
                if embedding is not None:
                    qvec = embedding.result()
                    self.cache.set(cachekeys.query_vector(self.embedder.model_id, query), qvec)
                assert qvec is not None
                near, meaning = nearest(self.index, qvec, pool, allowed)
                sims = dict(near)
            if mode == "hybrid":
                assert meaning is not None
                scored = self._fused(conn, query, words_found, sims, meaning, pool)
            else:
                scored = single(words if mode == "text" else sims, words=mode == "text")
            if len(scored) > limit:  # ties at the cut stay, so that ids break them below
                edge = scored[limit - 1].score
                scored = [s for s in scored if s.score >= edge]
            if not scored:
                return []
            listed, values = marks([s.rid for s in scored])
            where, params = flt.where("m")
            rows = {
                r[0]: r
                for r in conn.execute(
                    f"SELECT {COLUMNS} FROM memories m WHERE m.rid IN ({listed}) AND {where}",
                    values + params,
                )
            }
        found = [(s, to_memory(rows[s.rid])) for s in scored if s.rid in rows]
        found.sort(key=lambda pair: (-pair[0].score, pair[1].id))  # the same on every replica
        return [
            Hit(
                memory=memory,
                score=round(s.score, 6),
                text_score=s.text_score,
                vector_score=s.vector_score,
                context_score=s.context_score,
                time_score=s.time_score,
            )
            for s, memory in found[:limit]
        ]

    def _words(
        self,
        conn: apsw.Connection,
        query: str,
        flt: Filters,
        pool: int,
        known: Seen,
        order: Carried | None,
    ) -> WordSignals:
        """The word signals of a hybrid search."""
        terms = (
            text_index.node_terms(conn, query, flt, pool, self.cache, known.columns)
            if flt.scope is None
            else text_index.scoped_terms(conn, query, flt)
        )
        ranked = terms.scores()
        if not ranked:
            return NO_WORDS
        trusted = strong(terms.held(ranked[0][0]), terms.asked)
        found = threads(conn, self.index, [rid for rid, _ in ranked[:pool]], known.runs, order)
        rids = found.rids
        at = dict(zip(rids, range(len(rids)), strict=True))
        known.lengths.put(terms.lengths)  # the word hits' (FTS5's count, from their terms)
        counts = np.zeros((len(rids), len(terms.words)))
        hits = [r for r in terms.counts if r in at]
        if hits:
            counts[[at[r] for r in hits]] = [terms.counts[r] for r in hits]
        own, with_thread = bm25f(
            np.asarray(terms.idf),
            terms.full,
            counts,
            known.lengths.of(conn, rids),
            found.around,
        )
        return WordSignals(
            own=_positive(rids, own),
            words=_positive(rids, with_thread),
            held={}  # only weak words ask how many of the query's words a memory holds
            if trusted
            else dict(zip(rids, held(counts, found.around).tolist(), strict=True)),
            trusted=trusted,
            read=found.read,
        )

    def _fused(
        self,
        conn: apsw.Connection,
        query: str,
        words_found: WordSignals | None,
        sims: dict[int, float],
        meaning: Meaning,
        pool: int,
    ) -> list[Scored]:
        found = words_found or NO_WORDS
        words = found.words
        best_words = sorted(words, key=lambda r: (-words[r], r))[:pool]
        candidates = list(dict.fromkeys([*best_words, *sims]))
        sims = {**sims, **meaning.of([r for r in candidates if r not in sims])}
        named = Named(query)
        timely: frozenset[int] = frozenset()
        if named:
            listed, values = marks(candidates)
            timely = frozenset(
                int(rid)
                for rid, when in conn.execute(
                    f"SELECT rid, coalesce(event_at, created_at) FROM memories"
                    f" WHERE rid IN ({listed})",
                    values,
                )
                if named.holds(int(when))
            )
        return fuse(
            candidates,
            found.own,
            words,
            sims,
            trusted=found.trusted,
            timely=timely,
            held=found.held,
        )

    def _allowed(self, conn: apsw.Connection, flt: Filters) -> np.ndarray:
        key = cachekeys.compound("a", self.fresh.scope_token(flt.scope), flt)
        cached = self.cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        where, params = flt.where("m")
        rids = np.sort(
            np.fromiter(
                (r[0] for r in conn.execute(f"SELECT m.rid FROM memories m WHERE {where}", params)),
                dtype=np.int64,
            )
        )  # sorted: the index tests membership by binary search
        self.cache.set(key, rids)
        return rids

    def close(self) -> None:
        """Stop the query embedder and a reading of the thread order."""
        self.orders.close()
        self.queries.close()

    def warm(self) -> None:
        """Start loading the embedding model in the background (no-op once loaded)."""
        if self._warm is None:
            self._warm = self.queries.submit("warm up")

    def expect(self, query: str) -> None:
        """Begin embedding `query` for a search of it still to come (one waiting its
        turn): its vector is ready when the turn comes, and queries that arrive together
        are embedded in one batch."""
        key = cachekeys.query_vector(self.embedder.model_id, query)
        with self._expected_lock:
            if query in self._expected or self.cache.get(key) is not None:
                return
            future = self.queries.submit(query)
            self._expected[query] = future
        future.add_done_callback(lambda done: self._embedded(query, key, done))

    def _embedded(self, query: str, key: str, done: Future[np.ndarray]) -> None:
        """An expected query's vector goes to the cache (after an error, its search
        embeds it again and meets the error itself)."""
        if done.exception() is None:
            self.cache.set(key, done.result())
        with self._expected_lock:
            if self._expected.get(query) is done:
                del self._expected[query]

    def _query_vector(self, query: str) -> Future[np.ndarray]:
        """The query's vector: from the cache, else from its embedding begun ahead,
        else embedded by the batcher now."""
        cached = self.cache.get(cachekeys.query_vector(self.embedder.model_id, query))
        if cached is not None:
            done: Future[np.ndarray] = Future()
            done.set_result(cached)
            return done
        with self._expected_lock:
            expected = self._expected.get(query)
        return self.queries.submit(query) if expected is None else expected
