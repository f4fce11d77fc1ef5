"""Readers: a failing read gives its connection back, and no read waits for a writer."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from cis import InvalidInput, Node, NotFound

from .conftest import CliRunner


def test_thousands_of_failing_reads_leave_no_connection_behind(node: Node) -> None:
    memory = node.memory
    kept = memory.add("one memory to read around")
    memory.flush()  # the model is loaded, the reader pool warm
    me = psutil.Process()

    def fail(times: int) -> int:
        for number in range(times):
            with pytest.raises(NotFound):
                memory.history(f"missing-{number}")
            with pytest.raises(InvalidInput):
                memory.list(after=f"no-such-cursor-{number}")
        return int(me.num_fds())

    settled = fail(50)
    assert fail(1500) <= settled + 2  # each leak was one fd per failure: 3,000 here
    assert memory.history(kept.id)[0].text == kept.text  # the pool still serves


def test_reads_do_not_wait_for_a_writer(data_dir: Path, cli: CliRunner) -> None:
    """A long import holds the write lock; every read-only command still answers (with a
    busy timeout of 1 s, a command that waited for the lock would fail with exit 7)."""
    cli("init", check=True)
    added = cli("memory", "add", "the quokka sleeps by day", "--json", check=True)
    memory_id = added.stdout.split('"id":"')[1].split('"')[0]
    cli("memory", "search", "quokka", check=True)  # embeds what is pending, now
    os.environ["CIS_BUSY_TIMEOUT_MS"] = "1000"
    try:
        with Node.open(data_dir, background=False) as holder, holder.db.write() as conn:
            conn.execute("INSERT INTO meta VALUES ('held-by-test', 1)")
            for args in (
                ("memory", "list"),
                ("memory", "get", memory_id),
                ("memory", "history", memory_id),
                ("memory", "search", "quokka"),
                ("memory", "search", "quokka", "--mode", "text"),
                ("memory", "export"),
                ("status",),
                ("token", "list"),
                ("dag", "list"),
                ("skill", "list"),
            ):
                done = cli(*args)
                assert done.returncode == 0, f"cis {' '.join(args)}: {done.stderr}"
    finally:
        del os.environ["CIS_BUSY_TIMEOUT_MS"]
