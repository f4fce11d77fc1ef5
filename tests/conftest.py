"""Shared fixtures: a fresh node in a temp dir, and a runner for the real `cis` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from cis import Node

# CI runs the property tests on a fixed seed, so a submission is judged on the same
# examples every time; locally they explore new ones on each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

CIS = str(Path(sys.executable).parent / "cis")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "node"


@pytest.fixture
def node(data_dir: Path) -> Iterator[Node]:
    with Node.open(data_dir) as opened:
        yield opened


# a `cis serve` of a test listens for peers on a free port of loopback, never on 7677
LOCAL_SYNC = {"CIS_SYNC_PORT": "0", "CIS_SYNC_HOST": "127.0.0.1", "CIS_DISCOVERY": "false"}

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(data_dir: Path) -> CliRunner:
    """Run the real `cis` executable against the test's data dir."""

    def run(
        *args: str, input: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CIS_DATA_DIR": str(data_dir), **LOCAL_SYNC}
        env.pop("CIS_PASSPHRASE", None)
        done = subprocess.run(
            [CIS, *args], input=input, capture_output=True, text=True, env=env, timeout=120
        )
        if check and done.returncode != 0:
            raise AssertionError(f"cis {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    return run


def gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait (for the event, at most `timeout`) until no process of `pids` runs; the ones
    still running then (a zombie counts as gone)."""
    import psutil

    alive = []
    for pid in pids:
        try:
            alive.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(alive, timeout=0.2)
        alive = [p for p in alive if _running(p)]
    return [p.pid for p in alive if _running(p)]


def _running(process: object) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE  # type: ignore[attr-defined]
    except psutil.NoSuchProcess:
        return False
