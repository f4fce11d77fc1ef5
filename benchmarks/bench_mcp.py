"""MCP over stdio with the `mcp` SDK's own client against `cis mcp`, over 10k memories:
start-up (process start to the answered initialize), the first search after it, and
memory_search tool calls once warm (p50/p95). The baseline is the same searches through
the Python API in one process, in the same run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import anyio
from bench_http import fill
from common import emit, english_sentences, median, percentile, temp_dir
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from cis import Node

N = 10_000
CALLS = 200
STARTS = 9
CIS = str(Path(sys.executable).parent / "cis")


async def session(data_dir: Path, queries: list[str]) -> tuple[float, float, list[float]]:
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir)}
    began = time.perf_counter()
    async with Client(StdioServerParameters(command=CIS, args=["mcp"], env=env)) as client:
        ready = time.perf_counter() - began
        began = time.perf_counter()
        await client.call_tool("memory_search", {"query": "first question"})
        first = time.perf_counter() - began
        calls = []
        for q in queries:
            began = time.perf_counter()
            result = await client.call_tool("memory_search", {"query": q, "limit": 10})
            calls.append(time.perf_counter() - began)
            assert not result.is_error
    return ready, first, calls


def main() -> None:
    data_dir = temp_dir("mcp")
    queries = english_sentences(CALLS, seed=7, length=6)
    with Node.open(data_dir, background=False) as node:
        fill(node, N)
        node.memory.search("warm up")
        python_api = []
        for q in queries:
            began = time.perf_counter()
            node.memory.search(q, limit=10)
            python_api.append(time.perf_counter() - began)
    starts, firsts = [], []
    calls: list[float] = []
    for n in range(STARTS):
        ready, first, timed = anyio.run(session, data_dir, queries if n == 0 else [])
        starts.append(ready)
        firsts.append(first)
        calls += timed
    emit(
        "mcp_stdio",
        memories=N,
        start_to_ready_median_s=statistics.median(starts),
        start_to_ready_max_s=max(starts),
        first_search_after_ready_median_s=statistics.median(firsts),
        tool_call_search_p50_ms=median(calls) * 1000,
        tool_call_search_p95_ms=percentile(calls, 95) * 1000,
        python_api_search_p50_ms=median(python_api) * 1000,
        tool_call_over_python_api_p50=median(calls) / median(python_api),
        note="distinct 6-word queries, each embedded; start-up is `cis mcp` spawned by the"
        " client until its initialize handshake returns",
    )


if __name__ == "__main__":
    main()
