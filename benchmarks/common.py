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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "apple",
    "river",
    "mountain",
    "cloud",
    "server",
    "database",
    "billing",
    "invoice",
    "deploy",
    "cluster",
    "memory",
    "vector",
    "search",
    "window",
    "garden",
    "kitchen",
    "train",
    "airport",
    "doctor",
    "music",
    "guitar",
    "coffee",
    "market",
    "budget",
    "report",
    "meeting",
    "project",
    "launch",
    "backup",
    "network",
    "printer",
    "laptop",
    "phone",
    "camera",
    "weather",
]


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


def sentences(n: int, seed: int = 0, length: int = 12) -> list[str]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(WORDS), size=(n, length))
    return [f"{i} " + " ".join(WORDS[j] for j in row) for i, row in enumerate(picks)]


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


def ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


def us(seconds: float) -> float:
    return round(seconds * 1e6, 4)


def median(values: list[float]) -> float:
    return statistics.median(values)
