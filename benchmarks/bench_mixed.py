"""Hybrid search while memories are being written, against search alone, at 100k
memories (or as many as the first argument says): what an agent that writes as it
reads gets.

Rounds alternate four blocks of distinct English queries in one process: searches
alone (after WARM_UP untimed ones at the same state, so that they are what a node that
is only read gives), the same number with one `add` before every WRITE_EVERY-th, the
same with one edit (`set` of a memory added before: a new text) instead, and the same
after one bulk add of BULK memories (`add_many`, one thread). Vectors are given, so
nothing waits for the embedder. Each search is timed on its own, the write
outside it, so each ratio is what a write costs the searches after it: every write is a
new state of the node, and what searches keep of the data between them (the terms,
lengths and thread runs of `Known`, the thread order) is carried over what it changed.
"""

from __future__ import annotations

import sys
import time

from common import clustered_vectors, emit, english_sentences, fill_english, median, temp_dir

from cis import Node

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
ROUNDS = 5
SEARCHES = 200  # a block
WRITE_EVERY = 10
WARM_UP = 400  # searches before each round: the thread order is read by then
BULK = 1000  # memories of the bulk add before a block


def block(node: Node, queries: list[str], writes: list[tuple[str, list[float]]]) -> list[float]:
    """Seconds taken by each search of `queries`, a `set` from `writes` (key, vector)
    before every WRITE_EVERY-th if any are given."""
    took = []
    for i, query in enumerate(queries):
        if writes and i % WRITE_EVERY == 0:
            key, vector = writes.pop()
            node.memory.set(key, f"{key} {query}", embedding=vector)
        began = time.perf_counter()
        node.memory.search(query, limit=10)
        took.append(time.perf_counter() - began)
    return took


def main() -> None:
    data_dir = temp_dir("mixed")
    queries = english_sentences(ROUNDS * (WARM_UP + 4 * SEARCHES), seed=21, length=6)
    count = ROUNDS * SEARCHES // WRITE_EVERY
    vectors = clustered_vectors(2 * count, seed=22).tolist()
    adds = [(f"note{n}", vectors[n]) for n in range(count)]  # new keys: adds
    edits = [(f"note{n}", vectors[count + n]) for n in range(count)]  # the same keys again
    bulks = clustered_vectors(ROUNDS * BULK, seed=23)
    alone: list[float] = []
    mixed: list[float] = []
    edited: list[float] = []
    bulked: list[float] = []
    firsts: list[float] = []  # the first search after each bulk add
    with Node.open(data_dir) as node:
        fill_english(node, N)
        at = 0
        for _ in range(ROUNDS):
            for query in queries[at : at + WARM_UP]:
                node.memory.search(query, limit=10)
            at += WARM_UP
            alone += block(node, queries[at : at + SEARCHES], [])
            at += SEARCHES
            mixed += block(node, queries[at : at + SEARCHES], adds)
            at += SEARCHES
            edited += block(node, queries[at : at + SEARCHES], edits)
            at += SEARCHES
            lo = len(firsts) * BULK
            node.memory.add_many(
                {"text": f"bulk {n} {queries[n % len(queries)]}", "embedding": v, "thread": "bulk"}
                for n, v in enumerate(bulks[lo : lo + BULK], start=lo)
            )
            after = block(node, queries[at : at + SEARCHES], [])
            firsts.append(after[0])
            bulked += after
            at += SEARCHES
            node.memory.index.wait_built()  # no merge of the bulk's vectors in the next round
    emit(
        "search_while_writing",
        memories=N,
        write_every=WRITE_EVERY,
        searches_alone_p50_ms=median(alone) * 1000,
        searches_while_adding_p50_ms=median(mixed) * 1000,
        while_adding_over_alone=median(mixed) / median(alone),
        searches_while_editing_p50_ms=median(edited) * 1000,
        while_editing_over_alone=median(edited) / median(alone),
        bulk_add=BULK,
        searches_after_bulk_add_p50_ms=median(bulked) * 1000,
        after_bulk_add_over_alone=median(bulked) / median(alone),
        first_search_after_bulk_add_ms=median(firsts) * 1000,
        note="one add, or one edit of a memory added before (vectors given), before every"
        " write_every-th search of the writing blocks, each search timed without it; a"
        " block after one add_many of bulk_add memories (first_search_*: the median over"
        " rounds of the first search after it, which reads the new runs); blocks of 200"
        " alternated five times in one process, each alone block after 400 untimed"
        " searches at its state",
    )


if __name__ == "__main__":
    main()
