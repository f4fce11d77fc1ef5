"""Several processes on one data dir: visibility, concurrent writers, and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from cis import Node

from .conftest import CliRunner


def _python(code: str, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "CIS_DATA_DIR": str(data_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate: object, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_cli_write_is_found_by_a_running_node_at_once(node: Node, cli: CliRunner) -> None:
    node.memory.add("warm up the index")
    node.memory.flush()
    assert node.memory.search("warm up")  # index and caches loaded
    cli("memory", "add", "the zebra crossing on Elm street is repainted", check=True)
    hits = node.memory.search("zebra crossing")
    assert hits and hits[0].memory.text.startswith("the zebra crossing")
    # and by meaning once this node has adopted and embedded what the CLI left queued
    assert _wait_for(
        lambda: any(
            h.memory.text.startswith("the zebra")
            for h in node.memory.search("pedestrian stripes painted on the road", mode="vector")
        )
    )


def test_two_writer_processes_do_not_fail_on_the_lock(data_dir: Path) -> None:
    Node.open(data_dir).close()
    code = """
        import sys
        from cis import Node
        with Node.open(background=False) as node:
            for i in range(60):
                node.memory.add(f"writer {sys.argv[1]} item {i}")
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), name],
            env={**os.environ, "CIS_DATA_DIR": str(data_dir)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Node.open(data_dir) as node:
        assert node.memory.count() == 120
        texts = [m.text for m in node.memory.list(limit=1000)]
        assert sorted(texts) == sorted(f"writer {w} item {i}" for w in "ab" for i in range(60))


def test_sigkill_loses_no_committed_memory_and_the_index_repairs(data_dir: Path) -> None:
    Node.open(data_dir).close()
    writer = _python(
        """
        from cis import Node
        node = Node.open()
        i = 0
        while True:
            m = node.memory.add(f"durable fact number {i} about lighthouses")
            print(m.id, flush=True)
            i += 1
        """,
        data_dir,
    )
    assert writer.stdout is not None
    ids = [writer.stdout.readline().strip() for _ in range(40)]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with Node.open(data_dir) as node:
        for memory_id in ids:
            assert node.memory.get(memory_id) is not None
        assert node.memory.flush(timeout=120)
        status = node.status()
        assert status.pending_embeddings == 0
        assert status.vectors == status.memories >= 40
        with node.db.read() as conn:
            dupes = conn.execute(
                "SELECT count(*) FROM"
                " (SELECT rid FROM memory_vectors GROUP BY rid HAVING count(*) > 1)"
            ).fetchall()[0][0]
        assert dupes == 0


def test_sigkill_while_embedding_resumes_on_next_open(data_dir: Path) -> None:
    with Node.open(data_dir, background=False) as node:
        node.memory.add_many([{"text": f"queued sentence {i} about gardens"} for i in range(300)])
    embedder = _python(
        """
        from cis import Node
        node = Node.open()
        print("started", flush=True)
        node.memory.flush()
        """,
        data_dir,
    )
    assert embedder.stdout is not None
    embedder.stdout.readline()
    with Node.open(data_dir, background=False) as peek:
        assert _wait_for(lambda: peek.memory.pending() < 300, 60)
    os.kill(embedder.pid, signal.SIGKILL)
    embedder.wait()
    with Node.open(data_dir) as node:
        assert node.memory.pending() > 0
        assert node.memory.flush(timeout=120)
        status = node.status()
        assert status.vectors == status.memories == 300
        hits = node.memory.search("flowers and plants in a yard", mode="vector", limit=5)
        assert all("gardens" in h.memory.text for h in hits)
