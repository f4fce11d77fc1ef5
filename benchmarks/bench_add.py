"""Write path: one durable add (word-searchable at return) and bulk import without embedding.

Baseline in the same run: the stdlib sqlite3 (no encryption, no FTS, no history) inserting
the same rows, one transaction per row and one for the bulk.
"""

from __future__ import annotations

import sqlite3
import time

from common import emit, median, percentile, sentences, temp_dir, time_calls

from cis import Node

SINGLE = 2000
BULK = 100_000


def plain_sqlite(texts: list[str]) -> tuple[list[float], float]:
    conn = sqlite3.connect(temp_dir("plain") / "plain.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE m(id INTEGER PRIMARY KEY, text TEXT, scope TEXT, tags TEXT)")
    it = iter(texts)

    def one() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO m(text, scope, tags) VALUES (?, 'global', '[]')", (next(it),))
        conn.execute("COMMIT")

    singles = time_calls(one, SINGLE)
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO m(text, scope, tags) VALUES (?, 'global', '[]')", ((t,) for t in texts)
    )
    conn.execute("COMMIT")
    return singles, time.perf_counter() - start


def main() -> None:
    texts = sentences(BULK)
    with Node.open(temp_dir("add"), background=False) as node:
        it = iter(texts)
        singles = time_calls(lambda: node.memory.add(next(it)), SINGLE)
        assert node.memory.search(texts[SINGLE - 1], mode="text", limit=1)
    with Node.open(temp_dir("bulk"), background=False) as node:
        start = time.perf_counter()
        node.memory.add_many({"text": t} for t in texts)
        bulk = time.perf_counter() - start
        assert node.memory.count() == BULK
    base_singles, base_bulk = plain_sqlite(texts)
    emit(
        "add",
        add_p50_ms=median(singles) * 1000,
        add_p95_ms=percentile(singles, 95) * 1000,
        bulk_import_per_s=BULK / bulk,
        bulk_memories=BULK,
        baseline_plain_sqlite_add_p50_ms=median(base_singles) * 1000,
        baseline_plain_sqlite_bulk_per_s=BULK / base_bulk,
        add_cost_vs_plain_sqlite=median(singles) / median(base_singles),
        note="encrypted row + FTS5 + history + embed queue in one transaction, WAL NORMAL",
    )


if __name__ == "__main__":
    main()
