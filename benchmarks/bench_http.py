"""HTTP search round trips against a real `cis serve` on 127.0.0.1 over 10k memories (or
as many as the first argument says: `bench_http.py 100000`):
one client in sequence (p50/p95/p99), then 8 concurrent clients (searches/s, errors),
from Python threads and, where wrk is installed, from wrk (its client costs far less).

Memories are 12-word texts of real English words, Zipf-distributed by frequency rank;
queries are 6 words drawn from the same distribution, every one distinct, so no result
comes from the search cache and the query is embedded on every search. The baseline is
the same searches through the Python API in one process, in the same run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psutil
from common import emit, english_sentences, fill_english, median, percentile, temp_dir

from cis import Node
from cis.index.embed import MiniLMEmbedder

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
SEQUENTIAL = 300
CLIENTS = 8
CONCURRENT_S = 20.0
CIS = str(Path(sys.executable).parent / "cis")


def queries(count: int, seed: int) -> list[str]:
    return english_sentences(count, seed=seed, length=6)


def start(data_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir)}
    made = subprocess.run(
        [CIS, "token", "create", "bench", "--json"], env=env, capture_output=True, check=True
    )
    secret = json.loads(made.stdout)["secret"]
    process = subprocess.Popen(
        [CIS, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return process, found.group(1), secret
    raise SystemExit(f"cis serve did not start (exit {process.poll()})")


def hammer(url: str, headers: dict[str, str], load: list[str]) -> dict[str, float]:
    """CLIENTS threads searching for CONCURRENT_S seconds; searches/s, latency, errors."""
    done: list[list[float]] = [[] for _ in range(CLIENTS)]
    errors = [0] * CLIENTS
    stop = time.perf_counter() + CONCURRENT_S

    def client_loop(n: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            i = n
            while time.perf_counter() < stop and i < len(load):
                began = time.perf_counter()
                answer = client.get("/v1/search", params={"q": load[i], "limit": 10})
                if answer.status_code != 200:
                    errors[n] += 1
                done[n].append(time.perf_counter() - began)
                i += CLIENTS

    began = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies = [x for per in done for x in per]
    return {
        "searches_per_s": len(latencies) / elapsed,
        "p50_ms": median(latencies) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": sum(errors),
    }


# wrk's Lua: each of its threads takes every CLIENTS-th line of the paths file from its
# own offset, so every request asks a distinct query; the token comes from the
# environment, not from argv
WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("CIS_WRK_PATHS")) do paths[#paths + 1] = line end
local count = 0
function setup(thread) count = count + 1; thread:set("offset", count) end
function init(args)
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("CIS_WRK_TOKEN")
  at, step = tonumber(offset), tonumber(os.getenv("CIS_WRK_THREADS"))
end
function request()
  local path = paths[at] or paths[1]
  at = at + step
  return wrk.format("GET", path)
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk_load(url: str, secret: str, load: list[str], server: psutil.Process) -> dict[str, float]:
    """The distinct-query load again from wrk (C, 2 threads, CLIENTS connections), so the
    client's cost is small; with the server's CPU time per search and its /healthz
    round trips meanwhile."""
    work = temp_dir("wrk")
    paths = work / "paths.txt"
    paths.write_text("".join(f"/v1/search?{urlencode({'q': q, 'limit': 10})}\n" for q in load))
    script = work / "search.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "CIS_WRK_PATHS": str(paths), "CIS_WRK_TOKEN": secret}
    env["CIS_WRK_THREADS"] = "2"
    probes: list[float] = []
    loaded = threading.Event()
    prober = threading.Thread(target=probe_liveness, args=(url, loaded, probes))
    prober.start()
    try:  # the prober stops however the load ends
        embedded, calls = query_embedding(url, secret)
        before = server.cpu_times()
        done = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{CLIENTS}",
                f"-d{int(CONCURRENT_S)}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        after = server.cpu_times()
    finally:
        loaded.set()
        prober.join()
    embedded_after, calls_after = query_embedding(url, secret)
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {
        pct: float(value) * _UNITS[unit]
        for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)
    }
    cpu = (after.user + after.system) - (before.user + before.system)
    return {
        "searches_per_s": rate,
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
        "errors": int(bad.group(1)) if bad else 0,
        "server_cpu_ms_per_search": cpu / max(total, 1) * 1000,
        "healthz_p50_ms": median(probes) * 1000,
        "healthz_max_ms": max(probes) * 1000,
        "queries_a_model_call": (embedded_after - embedded) / max(calls_after - calls, 1),
    }


def probe_liveness(url: str, done: threading.Event, took: list[float]) -> None:
    """GET /healthz every 0.1 s until `done`, each round trip's time into `took`: whether
    the node still answers its liveness check while searches saturate it."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not done.is_set():
            began = time.perf_counter()
            client.get("/healthz").raise_for_status()
            took.append(time.perf_counter() - began)
            done.wait(0.1)


def embed_cost(texts: list[str], batch: int) -> float:
    """CPU seconds per query to embed `texts` in batches of `batch`."""
    embedder = MiniLMEmbedder()
    embedder.embed_queries(texts[:batch])
    began = time.process_time()
    for i in range(0, len(texts), batch):
        embedder.embed_queries(texts[i : i + batch])
    return (time.process_time() - began) / len(texts)


def query_embedding(url: str, secret: str) -> tuple[float, float]:
    """The server's counts of search queries embedded and of the model calls they took."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {secret}"}).text
    counts = dict(line.split()[:2] for line in text.splitlines() if line.startswith("cis_query_"))
    return float(counts["cis_query_embeddings_total"]), float(counts["cis_query_batches_total"])


def main() -> None:
    data_dir = temp_dir("http")
    with Node.open(data_dir) as node:
        fill_english(node, N)
        asked = queries(SEQUENTIAL, seed=7)
        node.memory.search("warm up", limit=10)
        in_process = []
        for q in asked:
            began = time.perf_counter()
            node.memory.search(q, limit=10)
            in_process.append(time.perf_counter() - began)

    process, url, secret = start(data_dir)
    try:
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            client.get("/v1/search", params={"q": "warm up"}).raise_for_status()
            sequential = []
            for q in asked:
                began = time.perf_counter()
                client.get("/v1/search", params={"q": q, "limit": 10}).raise_for_status()
                sequential.append(time.perf_counter() - began)

        distinct = hammer(url, headers, queries(CLIENTS * 2000, seed=8))
        repeated = hammer(url, headers, queries(50, seed=9) * 400)
        from_wrk = (
            wrk_load(url, secret, queries(CLIENTS * 2000, seed=11), psutil.Process(process.pid))
            if shutil.which("wrk")
            else {}
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    to_embed = queries(96, seed=10)
    embed_batched = embed_cost(to_embed, 8)
    served = max(1, round(from_wrk["queries_a_model_call"])) if from_wrk else 8
    embed_served = embed_batched if served == 8 else embed_cost(to_embed, served)
    alone = 1 / median(in_process)  # searches a second of one caller in the process
    emit(
        "http_search",
        memories=N,
        sequential_p50_ms=median(sequential) * 1000,
        sequential_p95_ms=percentile(sequential, 95) * 1000,
        sequential_p99_ms=percentile(sequential, 99) * 1000,
        python_api_p50_ms=median(in_process) * 1000,
        http_over_python_api_p50=median(sequential) / median(in_process),
        concurrent_clients=CLIENTS,
        **{f"concurrent_{k}": v for k, v in distinct.items()},
        **{f"concurrent_repeated_{k}": v for k, v in repeated.items()},
        **{f"wrk_{k}": v for k, v in from_wrk.items()},
        concurrent_over_python_api=distinct["searches_per_s"] / alone,
        wrk_over_python_api=from_wrk["searches_per_s"] / alone if from_wrk else None,
        wrk_server_cpu_ms_per_search_embedding_aside=(
            from_wrk["server_cpu_ms_per_search"] - embed_served * 1000 if from_wrk else None
        ),
        wrk_server_cpu_ms_per_search_embedding_floor_aside=(
            from_wrk["server_cpu_ms_per_search"] - embed_batched * 1000 if from_wrk else None
        ),
        query_embedding_cpu_ms_batched=embed_batched * 1000,
        query_embedding_cpu_ms_as_served=embed_served * 1000,
        note="concurrent_*: every query distinct, so each is embedded (no cache hit);"
        " concurrent_repeated_*: 50 queries cycled, so results come from the search cache"
        " (the HTTP layer's own ceiling); query_embedding_cpu_ms_batched: CPU time to"
        " embed one query in batches of 8, the floor of a distinct search's cost;"
        " query_embedding_cpu_ms_as_served: the same in batches of the size the server made"
        " under wrk (wrk_queries_a_model_call, from /metrics), which *_embedding_aside takes"
        " off the server's CPU a search (*_embedding_floor_aside takes off the floor); wrk_*:"
        " the distinct load from wrk (C; absent when wrk is not installed: apt-get install"
        " wrk), with the server process's CPU time per search and /healthz probed every 0.1 s"
        " meanwhile; *_over_python_api: that"
        " rate against one caller's in the process (1 / python_api_p50), measured in the"
        " same run, so that the machine's hour counts less (it does not cancel out)",
    )


if __name__ == "__main__":
    main()
