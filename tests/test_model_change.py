"""Another embedder plugs in through the Embedder protocol; a model change re-embeds."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cis import Node
from cis.index.embed import normalize


class HashingEmbedder:
    """A real, deterministic bag-of-words embedder (feature hashing): no model files."""

    model_id = "test-hashing-384"
    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dim] += 1.0
        return normalize(out)

    embed_queries = embed


def _models(node: Node) -> set[str]:
    with node.db.read() as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT model FROM memory_vectors")}


def test_changing_the_model_reembeds_everything_on_open(data_dir: Path) -> None:
    with Node.open(data_dir) as node:
        node.memory.add_many({"text": f"note number {i} about otters"} for i in range(5))
        node.memory.add("brought my own vector", embedding=np.ones(384))
        node.memory.flush()
        minilm = node.memory.embedder.model_id
        assert _models(node) == {minilm, "supplied"}
    # without background embedding, the queue is still whole when it is counted
    with Node.open(data_dir, embedder=HashingEmbedder(), background=False) as node:
        assert node.memory.pending() == 5  # queued on open: vectors of another model
        node.memory.flush()
        assert _models(node) == {"test-hashing-384", "supplied"}
        hits = node.memory.search("otters number 3", mode="vector", limit=1)
        assert hits[0].memory.text == "note number 3 about otters"
        assert node.status().model == "test-hashing-384"
