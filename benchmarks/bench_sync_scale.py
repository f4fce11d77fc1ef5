"""Sync at 100,000 ops: node B (a separate `cis serve`) misses 100k public memories that
A writes while B is stopped, then catches up by `cis sync`; then three peers keep a
session with B at once (A, and C and D, which catch up from B over their sessions) and
B's RSS is read: empty, holding the 100k, and with all three connected and in step."""

from __future__ import annotations

import time

import psutil
from bench_sync import CIS, _env, _serve, _stop, _wait_count
from common import clustered_vectors, emit, sentences, temp_dir

from cis import Node

MEMORIES = 100_000
BATCH = 1000


def main() -> None:
    import subprocess

    root = temp_dir("sync-scale")
    dirs = {name: root / name for name in "abcd"}
    for d in dirs.values():
        subprocess.run([CIS, "init"], env=_env(d), check=True, capture_output=True)
    nodes = {name: Node.open(dirs[name]) for name in "acd"}
    b, b_address, b_did = _serve(dirs["b"])
    try:
        for node in nodes.values():
            subprocess.run(
                [CIS, "peer", "add", node.identity.did, "127.0.0.1:1"],
                env=_env(dirs["b"]),
                check=True,
                capture_output=True,
            )
        _stop(b)  # B misses what A writes now
        a = nodes["a"]
        texts = sentences(MEMORIES, seed=3)
        vectors = clustered_vectors(MEMORIES, seed=3)
        for start in range(0, MEMORIES, BATCH):
            a.memory.add_many(
                [
                    {"text": t, "domain": "public", "embedding": v}
                    for t, v in zip(
                        texts[start : start + BATCH], vectors[start : start + BATCH], strict=True
                    )
                ]
            )
        b, b_address, _ = _serve(dirs["b"])
        idle_rss = psutil.Process(b.pid).memory_info().rss
        a.peers.add(b_did, b_address)
        started = time.perf_counter()
        report = a.sync.now(b_did)[0]
        caught_up = time.perf_counter() - started
        assert report.error is None and report.sent == MEMORIES, report
        held_rss = psutil.Process(b.pid).memory_info().rss  # 100k memories, no session
        started = time.perf_counter()
        for node in nodes.values():
            node.peers.add(b_did, b_address)
            node.sync.start(None)  # a session with B each
        for name in "cd":
            _wait_count(dirs[name], MEMORIES, limit_s=600)
        relayed = time.perf_counter() - started
        rss = psutil.Process(b.pid).memory_info().rss
        connected = sum(
            1 for c in psutil.Process(b.pid).net_connections("tcp") if c.status == "ESTABLISHED"
        )
    finally:
        for node in nodes.values():
            node.close()
        _stop(b)
    emit(
        "sync_scale",
        ops=MEMORIES,
        catch_up_100k_s=round(caught_up, 2),
        catch_up_ops_per_s=round(MEMORIES / caught_up),
        two_peers_from_b_s=round(relayed, 2),
        serve_rss_mb_idle=round(idle_rss / 2**20, 1),
        serve_rss_mb_100k=round(held_rss / 2**20, 1),
        serve_rss_mb_3_peers=round(rss / 2**20, 1),
        b_connections=connected,
        note="B a separate cis serve with 100k ops in its log; C and D catch up from B",
    )


if __name__ == "__main__":
    main()
