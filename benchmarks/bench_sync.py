"""Sync: 10,000 public memories written on node A in batches of 100 (vectors included)
reach node B, a separate `cis serve` process, over TLS WebSockets on loopback. Reports
how long after A's last write B holds them all, ops/s, and in the same run the raw
Ed25519 verify rate (each transaction of ops is verified once) and B's catch-up after
it missed 10,000 ops (A writes while B is stopped, then B starts).
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import clustered_vectors, emit, sentences, temp_dir

from cis import Node
from cis.net.identity import Identity

MEMORIES = 10_000
BATCH = 100
CIS = str(Path(sys.executable).parent / "cis")


def _env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir), "CIS_SYNC_HOST": "127.0.0.1"}
    env["CIS_SYNC_PORT"] = "0"
    env.pop("CIS_PASSPHRASE", None)
    return env


def _serve(data_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [CIS, "serve", "--port", "0"], env=_env(data_dir), stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"sync on wss://(\S+) as (\S+)", line)
        if found:
            return process, found.group(1), found.group(2)
    raise SystemExit(f"cis serve did not start (exit {process.poll()})")


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def _count(data_dir: Path) -> int:
    with Node.open(data_dir, background=False) as node:
        return node.memory.count()


def _wait_count(data_dir: Path, wanted: int, limit_s: float = 300) -> float:
    start = time.perf_counter()
    while _count(data_dir) < wanted:
        if time.perf_counter() - start > limit_s:
            raise SystemExit(f"B did not reach {wanted} memories in {limit_s} s")
        time.sleep(0.05)
    return time.perf_counter()


def _write(node: Node, texts: list[str], seed: int) -> float:
    vectors = clustered_vectors(len(texts), seed=seed)
    for start in range(0, len(texts), BATCH):
        node.memory.add_many(
            [
                {"text": t, "domain": "public", "embedding": v}
                for t, v in zip(
                    texts[start : start + BATCH], vectors[start : start + BATCH], strict=True
                )
            ]
        )
    return time.perf_counter()


def _add_costs(node: Node, rounds: int = 1000) -> tuple[float, float]:
    """Median ms of one private and of one public `add`, interleaved (a peer connected:
    the public one also logs and signs an op, and the session pushes it)."""
    times: dict[str, list[float]] = {"private": [], "public": []}
    words = sentences(2 * rounds, seed=9)
    vectors = clustered_vectors(2 * rounds, seed=9)  # given: no embedding competes
    for i in range(rounds):
        for n, domain in enumerate(("private", "public")):
            start = time.perf_counter()
            node.memory.add(words[2 * i + n], domain=domain, embedding=vectors[2 * i + n])
            times[domain].append((time.perf_counter() - start) * 1000)
    return statistics.median(times["private"]), statistics.median(times["public"])


def verify_rate() -> float:
    me = Identity(os.urandom(32))
    data = os.urandom(200)
    signature = me.sign(data)
    key = me.private_key().public_key()
    start = time.perf_counter()
    for _ in range(2000):
        key.verify(signature, data)
    return 2000 / (time.perf_counter() - start)


def main() -> None:
    root = temp_dir("sync")
    a_dir, b_dir = root / "a", root / "b"
    for d in (a_dir, b_dir):
        subprocess.run([CIS, "init"], env=_env(d), check=True, capture_output=True)
    b, b_address, b_did = _serve(b_dir)
    try:
        with Node.open(a_dir) as a:
            subprocess.run(
                [CIS, "peer", "add", a.identity.did, "127.0.0.1:1"],
                env=_env(b_dir),
                check=True,
                capture_output=True,
            )
            a.peers.add(b_did, b_address)
            a.sync.start(None)  # A connects to B and pushes as it writes
            first = time.perf_counter()
            last_write = _write(a, sentences(MEMORIES, seed=1), seed=1)
            arrived = _wait_count(b_dir, MEMORIES)
            private_ms, public_ms = _add_costs(a)  # the session with B still on
            a.sync.close()
            # B misses 10,000 ops: stopped while A writes, then started again
            _stop(b)
            _write(a, sentences(MEMORIES, seed=2), seed=2)
            b, b_address, _ = _serve(b_dir)
            a.peers.add(b_did, b_address)
            started = time.perf_counter()
            report = a.sync.now(b_did)[0]
            caught_up = time.perf_counter() - started
            assert report.error is None and report.sent >= MEMORIES, report
    finally:
        _stop(b)
    rate = MEMORIES / (arrived - first)
    verify = verify_rate()
    emit(
        "sync",
        memories=MEMORIES,
        batch=BATCH,
        on_b_after_last_write_s=round(arrived - last_write, 3),
        end_to_end_ops_per_s=round(rate),
        catch_up_10k_s=round(caught_up, 3),
        add_private_p50_ms=round(private_ms, 3),
        add_public_p50_ms=round(public_ms, 3),
        public_vs_private=round(public_ms / private_ms, 3),
        ed25519_verify_per_s=round(verify),
        ops_vs_verify=round(rate / verify, 3),
        note="B a separate cis serve; A writes in-process and pushes; catch-up by cis sync",
    )


if __name__ == "__main__":
    main()
