"""Embedding pipeline (add -> batch indexer -> vectors stored and searchable) against the
raw embedder on the same texts, in the same run."""

from __future__ import annotations

import time

from common import emit, sentences, temp_dir

from cis import Node
from cis.index.embed import MiniLMEmbedder

N = 1536
ROUNDS = 3


def main() -> None:
    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    raw_rates, pipe_rates = [], []
    for r in range(ROUNDS):
        texts = sentences(N, seed=100 + r, length=16)
        start = time.perf_counter()
        for i in range(0, N, 32):
            embedder.embed(texts[i : i + 32])
        raw_rates.append(N / (time.perf_counter() - start))

        texts = sentences(N, seed=200 + r, length=16)  # fresh texts: no reuse by hash
        with Node.open(temp_dir("embed"), embedder=embedder) as node:
            start = time.perf_counter()
            node.memory.add_many({"text": t} for t in texts)
            node.memory.flush()
            pipe_rates.append(N / (time.perf_counter() - start))
            assert node.status().vectors == N
    raw, pipe = sorted(raw_rates)[ROUNDS // 2], sorted(pipe_rates)[ROUNDS // 2]
    emit(
        "embedding_pipeline",
        pipeline_per_s=pipe,
        raw_embedder_per_s=raw,
        ratio_pipeline_to_raw=pipe / raw,
        texts=N,
        note="medians of 3 rounds; pipeline includes the write, queue, embedding and vector store",
    )


if __name__ == "__main__":
    main()
