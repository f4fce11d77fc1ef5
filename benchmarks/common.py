"""Helpers shared by the benchmarks: timing, percentiles, synthetic corpora, output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the `cis` command sets it

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SYLLABLES = "ka lo mi ne ru sa te vi zo ba de fi go hu ja ke li mo nu pa qi re so tu".split()
VOCABULARY = 20_000


def _vocabulary() -> list[str]:
    rng = np.random.default_rng(42)
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        size = int(rng.integers(2, 5))
        words["".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), size))] = None
    return list(words)


WORDS = _vocabulary()
_ZIPF = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.1
_ZIPF /= _ZIPF.sum()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_calls(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Seconds taken by each of `repeat` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def time_each(fn: Callable[[Any], Any], items: Any) -> list[float]:
    """Seconds taken by fn(item) for each item."""
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - start)
    return out


def sentences(n: int, seed: int = 0, length: int = 12) -> list[str]:
    """Texts of `length` words drawn from a Zipf-distributed vocabulary, like real prose."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(VOCABULARY, size=(n, length), p=_ZIPF)
    return [" ".join(WORDS[j] for j in row) for row in picks]


def _english() -> list[str]:
    """Whole English words of the model's tokenizer vocabulary, which lists them roughly
    from most to least frequent (BERT's order)."""
    from cis.index.embed import TOKENIZER

    vocab = json.loads(TOKENIZER.read_text())["model"]["vocab"]
    ranked = sorted(vocab.items(), key=lambda item: item[1])
    return [w for w, _ in ranked if w.isalpha() and w.isascii() and len(w) > 1][:VOCABULARY]


def english_sentences(n: int, seed: int = 0, length: int = 12) -> list[str]:
    """Texts of `length` real English words, Zipf-distributed by their frequency rank:
    real token counts for the model and real word frequencies for word search."""
    words = _english()
    rng = np.random.default_rng(seed)
    picks = rng.choice(
        len(words), size=(n, length), p=_ZIPF[: len(words)] / _ZIPF[: len(words)].sum()
    )
    return [" ".join(words[j] for j in row) for row in picks]


def clustered_vectors(n: int, dim: int = 384, clusters: int = 1000, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = centres[rng.integers(0, clusters, n)] + 0.08 * rng.normal(size=(n, dim)).astype(
        np.float32
    )
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data.astype(np.float32)


def fill_english(node: Any, n: int) -> None:
    """Store n English texts with vectors supplied in `node` (a cis.Node), their graph
    built (over 40k), so that the node saves it on close for a server to restore."""
    texts = english_sentences(n, seed=3)
    vectors = clustered_vectors(n, seed=3)
    node.memory.add_many({"text": t, "embedding": v} for t, v in zip(texts, vectors, strict=True))
    node.memory.search("load", embedding=vectors[0], limit=10)  # the index loads now
    node.memory.index.wait_built()


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"cis-bench-{prefix}-"))


def emit(name: str, **figures: Any) -> None:
    """Print the benchmark's one JSON line."""
    record = {
        "benchmark": name,
        **figures,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(record, default=lambda x: round(float(x), 6)))


def median(values: list[float]) -> float:
    return statistics.median(values)
