"""Word search within one scope (statistics of that scope alone, scored in Python) against
the node-wide search (FTS5's own BM25), on the same 50k memories of real English words.

Prints one JSON line: p50/p95 of each, and their ratio, measured in the same run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import emit, english_sentences, median, percentile, temp_dir

from cis import Node

MEMORIES = 50_000
QUERIES = 200


def main() -> None:
    texts = english_sentences(MEMORIES, seed=1)
    queries = english_sentences(QUERIES, seed=2, length=6)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(MEMORIES, 384)).astype(np.float32)
    with Node.open(temp_dir("scoped") / "node", background=False) as node:
        node.memory.add_many(
            {"text": t, "scope": "project/big", "embedding": v}
            for t, v in zip(texts, vectors, strict=True)
        )
        timings: dict[str, list[float]] = {"node": [], "scope": []}
        for query in queries:  # alternate, so that both see the same machine state
            for name, scope in (("node", None), ("scope", "project/big")):
                node.memory.cache.clear()
                began = time.perf_counter()
                node.memory.search(query, scope=scope, mode="text", limit=50)
                timings[name].append((time.perf_counter() - began) * 1000)
    figures = {
        f"{name}_{stat}_ms": round(fn(values), 2)
        for name, values in timings.items()
        for stat, fn in (("p50", median), ("p95", lambda v: percentile(v, 95)))
    }
    emit(
        "scoped_word_search",
        memories=MEMORIES,
        queries=QUERIES,
        **figures,
        scope_over_node_p50=round(median(timings["scope"]) / median(timings["node"]), 2),
    )


if __name__ == "__main__":
    main()
