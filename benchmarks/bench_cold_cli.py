"""`cis memory search` from a cold process: time to the first result line and to exit,
over 10k memories (exact scan) and 100k (HNSW restored from its snapshot), the latter
also while another process keeps one core busy.

Baseline in the same run: a bare process that only imports onnxruntime and loads the
embedding model, the floor any cold search with a local model pays.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from common import clustered_vectors, emit, median, sentences, temp_dir

from cis import Node

SIZES = (10_000, 100_000)
RUNS = 7
CIS = str(Path(sys.executable).parent / "cis")
MODEL_ONLY = "from cis.index.embed import MiniLMEmbedder; MiniLMEmbedder().embed_queries(['warm'])"


def cold(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds to the first line on stdout, and to exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    proc.stdout.readline()
    first = time.perf_counter() - start
    proc.wait()
    return first, time.perf_counter() - start


def build(n: int) -> Path:
    data_dir = temp_dir(f"cold{n}")
    texts, vectors = sentences(n, seed=5), clustered_vectors(n, seed=5)
    with Node.open(data_dir) as node:
        for lo in range(0, n, 10_000):
            node.memory.add_many(
                {"text": texts[i], "embedding": vectors[i]} for i in range(lo, min(n, lo + 10_000))
            )
        node.memory.search("load", embedding=vectors[0])
        node.memory.index.wait_built()  # above the threshold: build, then snapshot
    return data_dir


def main() -> None:
    figures: dict[str, object] = {}
    queries = sentences(RUNS, seed=9, length=6)
    for n in SIZES:
        env = {**os.environ, "CIS_DATA_DIR": str(build(n))}
        runs = [cold([CIS, "memory", "search", q, "-n", "5"], env) for q in queries]
        figures[f"first_result_p50_s_{n // 1000}k"] = median([r[0] for r in runs])
        figures[f"exit_p50_s_{n // 1000}k"] = median([r[1] for r in runs])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core taken
    try:
        runs = [cold([CIS, "memory", "search", q, "-n", "5"], env) for q in queries]
    finally:
        busy.kill()
        busy.wait()
    figures["first_result_p50_s_100k_one_core_busy"] = median([r[0] for r in runs])
    figures["first_result_max_s_100k_one_core_busy"] = max(r[0] for r in runs)
    floor = [
        cold([sys.executable, "-c", MODEL_ONLY + "; print('ready')"], dict(os.environ))
        for _ in range(RUNS)
    ]
    figures["baseline_model_load_only_p50_s"] = median([r[1] for r in floor])
    emit("cold_cli_search", runs=RUNS, **figures)


if __name__ == "__main__":
    main()
