"""Resident memory of `cis serve` at 100k memories (English texts, vectors supplied).

Reports the server's RSS once it answers, after SEARCHES distinct HTTP searches, and
after ADDS HTTP adds (each embedded by the server, then merged into the vector graph,
which holds the old graph and the new one for a moment) and a few searches more.
"""

from __future__ import annotations

import httpx
import psutil
from bench_http import fill, queries, start
from common import emit, temp_dir

from cis import Node

N = 100_000
SEARCHES = 1500
ADDS = 3000


def main() -> None:
    data_dir = temp_dir("rss")
    with Node.open(data_dir) as node:
        fill(node, N)
    process, url, secret = start(data_dir)
    figures = {}
    try:
        server = psutil.Process(process.pid)
        figures["rss_started_mb"] = server.memory_info().rss / 1e6
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            for q in queries(SEARCHES, seed=5):
                client.get("/v1/search", params={"q": q, "limit": 10}).raise_for_status()
            figures["rss_after_searches_mb"] = server.memory_info().rss / 1e6
            for i in range(ADDS):
                note = {"text": f"a new note number {i} about the garden"}
                client.post("/v1/memories", json=note).raise_for_status()
            for q in queries(300, seed=6):
                client.get("/v1/search", params={"q": q, "limit": 10}).raise_for_status()
            figures["rss_after_adds_mb"] = server.memory_info().rss / 1e6
    finally:
        process.terminate()
        process.wait(timeout=30)
    emit(
        "rss_serve_100k",
        memories=N,
        searches=SEARCHES,
        adds=ADDS,
        **figures,
        note="RSS of the cis serve process: once it answers, after the distinct searches,"
        " after the adds (embedded by the server) and 300 searches more",
    )


if __name__ == "__main__":
    main()
