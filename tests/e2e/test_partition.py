"""A real network partition: two `cis serve` processes in their own network namespaces,
joined by a veth pair; the link is cut, both sides write (one edits the same key as the
other, one is killed with SIGKILL), the link heals, and both end with the same public
memory, nothing lost. Needs root and iproute2 (CI runs as root)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cis import Node

from ..conftest import CIS

WAIT_S = 180.0  # TCP retransmission after a healed link can take tens of seconds
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def namespaces() -> Iterator[tuple[str, str, str]]:
    """Two namespaces joined by a veth pair: (ns_a, ns_b, tag)."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"cis-a-{tag}", f"cis-b-{tag}"
    _ip("netns", "add", a)
    try:
        _ip("netns", "add", b)
        try:
            _ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
            _ip("link", "set", f"va{tag}", "netns", a)
            _ip("link", "set", f"vb{tag}", "netns", b)
            for ns, dev, addr in ((a, f"va{tag}", "10.77.0.1/24"), (b, f"vb{tag}", "10.77.0.2/24")):
                _ip("-n", ns, "addr", "add", addr, "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
            yield a, b, tag
        finally:
            _ip("netns", "del", b)
    finally:
        _ip("netns", "del", a)


def _env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir)}
    env.pop("CIS_PASSPHRASE", None)
    return env


def cis(data_dir: Path, *args: str) -> object:
    done = subprocess.run(
        [CIS, *args, "--json"], capture_output=True, text=True, env=_env(data_dir)
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def start(ns: str, data_dir: Path, host: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", ns, CIS, "serve", "--port", "0", "--sync-host", host],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if re.search(r"listening on http", line):
            return process
    raise AssertionError(f"cis serve did not start in {ns} (exit {process.poll()})")


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    process.send_signal(sig)
    code = process.wait(timeout=60)
    assert sig != signal.SIGTERM or code == 0, f"cis serve exited {code} on SIGTERM"


def digest(data_dir: Path) -> str:
    with Node.open(data_dir, background=False) as node:
        return node.memory.public_digest()


def texts(data_dir: Path) -> set[str]:
    return {m["text"] for m in cis(data_dir, "memory", "list", "--limit", "1000")["items"]}  # type: ignore[index]


def wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)  # another process's database: the event is its rows
    raise AssertionError(f"timed out waiting for {what}")


def test_a_partition_heals_to_one_state_with_nothing_lost(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for d in (a_dir, b_dir):
        cis(d, "init")
    a_did = cis(a_dir, "node", "id")["did"]  # type: ignore[index]
    b_did = cis(b_dir, "node", "id")["did"]  # type: ignore[index]
    cis(a_dir, "peer", "add", b_did, "10.77.0.2:7677")
    cis(b_dir, "peer", "add", a_did, "10.77.0.1:7677")
    with namespaces() as (ns_a, ns_b, tag):
        a = start(ns_a, a_dir, "10.77.0.1")
        b = start(ns_b, b_dir, "10.77.0.2")
        try:
            cis(a_dir, "memory", "add", "before the cut", "--domain", "public")
            wait_for(lambda: "before the cut" in texts(b_dir), "the first memory on b")
            _ip("-n", ns_a, "link", "set", f"va{tag}", "down")  # the cut
            cis(a_dir, "memory", "add", "written on a while cut off", "--domain", "public")
            cis(b_dir, "memory", "add", "written on b while cut off", "--domain", "public")
            cis(a_dir, "memory", "set", "plan", "a's plan", "--domain", "public")
            cis(b_dir, "memory", "set", "plan", "b's plan", "--domain", "public")
            cis(a_dir, "memory", "add", "PRIVATE on a")
            stop(b, signal.SIGKILL)  # and b dies meanwhile
            b = start(ns_b, b_dir, "10.77.0.2")
            _ip("-n", ns_a, "link", "set", f"va{tag}", "up")  # healed
            everything = {
                "before the cut",
                "written on a while cut off",
                "written on b while cut off",
            }
            wait_for(
                lambda: everything <= texts(a_dir) and everything <= texts(b_dir), "both sides"
            )
            wait_for(lambda: digest(a_dir) == digest(b_dir), "one state on both")
            assert not any("PRIVATE" in t for t in texts(b_dir))
            for d in (a_dir, b_dir):
                seen = {h["text"] for h in cis(d, "memory", "history", "plan")}  # type: ignore[union-attr]
                assert {"a's plan", "b's plan"} <= seen  # the loser is kept
        finally:
            stop(a)
            stop(b)


def test_nodes_that_allow_each_other_find_each_other_on_the_local_network(
    tmp_path: Path,
) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for d in (a_dir, b_dir):
        cis(d, "init")
    a_did = cis(a_dir, "node", "id")["did"]  # type: ignore[index]
    b_did = cis(b_dir, "node", "id")["did"]  # type: ignore[index]
    cis(a_dir, "network", "allow", b_did)  # by DID alone: no address typed anywhere
    cis(b_dir, "network", "allow", a_did)
    with namespaces() as (ns_a, ns_b, _):
        a = start(ns_a, a_dir, "0.0.0.0")
        b = start(ns_b, b_dir, "0.0.0.0")
        try:
            cis(a_dir, "memory", "add", "found by mDNS", "--domain", "public")
            wait_for(lambda: "found by mDNS" in texts(b_dir), "a's memory on b, by discovery")
            heard = cis(b_dir, "peer", "nearby")
            assert [(n["did"], n["address"], n["peer"]) for n in heard] == [  # type: ignore[index, union-attr]
                (a_did, "10.77.0.1:7677", True)
            ]
            events = [e["event"] for e in cis(b_dir, "network", "audit")]  # type: ignore[union-attr, index]
            assert "discovered" in events
        finally:
            stop(a)
            stop(b)
