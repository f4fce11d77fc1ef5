"""Bytes on disk per memory at 100k memories (12-word texts, 384-d vectors supplied):
the database by table (dbstat), the word index, the vectors and the HNSW snapshot; and
recall@10 of the exact scan over the stored vectors against float32 truth."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from common import clustered_vectors, emit, sentences, temp_dir

from cis import Node
from cis.index import stored
from cis.index.embed import normalize
from cis.index.vectors import VectorIndex
from cis.node import SNAPSHOT_FILE

N = 100_000
K = 10
QUERIES = 200


def main() -> None:
    texts = sentences(N, seed=1)
    vectors = clustered_vectors(N, seed=1)
    data_dir = temp_dir("disk")
    with Node.open(data_dir, background=False) as node:
        for lo in range(0, N, 10_000):
            node.memory.add_many(
                {"text": texts[i], "embedding": vectors[i]} for i in range(lo, lo + 10_000)
            )
    with Node.open(data_dir) as node:  # a running node builds the graph and saves it
        node.memory.search("build", embedding=vectors[0], limit=K)
        node.memory.index.wait_built()
    with Node.open(data_dir, background=False) as node, node.db.read() as conn:
        tables: dict[str, int] = defaultdict(int)
        for name, size in conn.execute("SELECT name, pgsize FROM dbstat"):
            tables[name] += size
        blobs = [b for (b,) in conn.execute("SELECT vector FROM memory_vectors ORDER BY rid")]
    rng = np.random.default_rng(2)
    picks = vectors[rng.integers(0, N, QUERIES)] + 0.05 * rng.normal(size=(QUERIES, 384))
    queries = (picks / np.linalg.norm(picks, axis=1, keepdims=True)).astype(np.float32)
    truth = VectorIndex(384, ann_threshold=10**9)
    truth.upsert(np.arange(1, N + 1), vectors)
    kept = VectorIndex(384, ann_threshold=10**9)
    kept.upsert(np.arange(1, N + 1), normalize(stored.decode(blobs, 384)[1]))  # as a node does
    recall = np.mean(
        [
            len({r for r, _ in truth.search(q, K)} & {r for r, _ in kept.search(q, K)}) / K
            for q in queries
        ]
    )
    files = {p.name: p.stat().st_size for p in Path(data_dir).iterdir() if p.is_file()}
    snapshot = files.get(SNAPSHOT_FILE, 0)
    database = sum(size for name, size in files.items() if name != SNAPSHOT_FILE)
    words = sum(size for name, size in tables.items() if name.startswith("memories_fts"))
    emit(
        "disk_100k",
        memories=N,
        bytes_per_memory=(database + snapshot) / N,
        database_bytes_per_memory=database / N,
        snapshot_bytes_per_memory=snapshot / N,
        word_index_bytes_per_memory=words / N,
        vectors_table_bytes_per_memory=tables.get("memory_vectors", 0) / N,
        tables_bytes_per_memory={
            name: size / N for name, size in sorted(tables.items(), key=lambda t: -t[1])[:12]
        },
        exact_recall_at_10_stored_vs_float32=float(recall),
        files=files,
    )


if __name__ == "__main__":
    main()
