"""Sync between real `cis serve` processes over TLS WebSockets on 127.0.0.1: public memory
arrives within moments, private memory never, strangers and impostors are refused."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cis.net import wire

from ..conftest import CIS, LOCAL_SYNC

WAIT_S = 60.0  # an upper bound for slow CI; every wait ends at its event


class Served:
    def __init__(self, data_dir: Path, process: subprocess.Popen[str], sync: str, did: str):
        self.data_dir = data_dir
        self.process = process
        self.sync = sync  # HOST:PORT of its sync listener
        self.did = did

    def cis(self, *args: str) -> Any:
        """A `cis ... --json` call on this node, as another process; its JSON."""
        done = subprocess.run(
            [CIS, *args, "--json"], capture_output=True, text=True, env=_env(self.data_dir)
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir), **LOCAL_SYNC}
    env.pop("CIS_PASSPHRASE", None)
    return env


@contextmanager
def serving(data_dir: Path) -> Iterator[Served]:
    env = _env(data_dir)
    subprocess.run([CIS, "init"], env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [CIS, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        sync = did = None
        for line in process.stdout:
            found = re.search(r"sync on wss://(\S+) as (\S+)", line)
            if found:
                sync, did = found.groups()
            if "listening on http" in line:
                break
        assert sync and did, f"cis serve did not start (exit {process.poll()})"
        yield Served(data_dir, process, sync, did)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        assert code == 0, f"cis serve exited {code} on SIGTERM"


def wait_for(found: Callable[[], object], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.05)  # polling another process's database: the event is the row
    raise AssertionError(f"timed out waiting for {what}")


def texts(node: Served) -> set[str]:
    return {m["text"] for m in node.cis("memory", "list")["items"]}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    with serving(tmp_path / "a") as a, serving(tmp_path / "b") as b:
        a.cis("peer", "add", b.did, b.sync)
        b.cis("peer", "add", a.did, a.sync)
        yield a, b


def test_public_memory_flows_both_ways_and_private_memory_never(
    pair: tuple[Served, Served],
) -> None:
    a, b = pair
    a.cis("memory", "add", "PRIVATE: the door code is 4711")
    a.cis("memory", "add", "Billing runs on PostgreSQL 16", "--domain", "public")
    wait_for(lambda: "Billing runs on PostgreSQL 16" in texts(b), "a's public memory on b")
    b.cis("memory", "set", "editor", "Alice uses helix", "--domain", "public")
    wait_for(lambda: "Alice uses helix" in texts(a), "b's public memory on a")
    assert not any("PRIVATE" in t for t in texts(b))
    hit = b.cis("memory", "search", "PostgreSQL billing", "--mode", "text")
    assert hit[0]["memory"]["origin"] == a.did  # findable by words, with its origin
    peers = {p["did"]: p for p in a.cis("peer", "list")}
    assert peers[b.did]["last_seen"] is not None


def test_a_removed_peer_is_cut_off(pair: tuple[Served, Served]) -> None:
    a, b = pair
    a.cis("memory", "add", "before removal", "--domain", "public")
    wait_for(lambda: "before removal" in texts(b), "the first memory on b")
    b.cis("peer", "remove", a.did)  # the running session ends within a quarter second
    a.cis("memory", "add", "after removal", "--domain", "public")
    done = subprocess.run(
        [CIS, "sync", "--json"], capture_output=True, text=True, env=_env(a.data_dir)
    )
    assert done.returncode == 13 and "not a peer" in json.loads(done.stdout)[0]["error"]
    # the refusal above came after a's last write; b holds nothing of it
    assert "after removal" not in texts(b)


def test_a_stranger_and_an_impostor_are_refused(
    tmp_path: Path, pair: tuple[Served, Served]
) -> None:
    a, b = pair
    with serving(tmp_path / "c") as c:
        c.cis("peer", "add", a.did, a.sync)  # c knows a, a does not know c
        done = subprocess.run(
            [CIS, "sync", "--json"], capture_output=True, text=True, env=_env(c.data_dir)
        )
        assert done.returncode == 13
        assert "not a peer" in json.loads(done.stdout)[0]["error"]
        # c claims b's address for a's DID: the certificate there is not a's
        c.cis("peer", "add", a.did, b.sync)
        done = subprocess.run(
            [CIS, "sync", "--json"], capture_output=True, text=True, env=_env(c.data_dir)
        )
        assert "certificate" in json.loads(done.stdout)[0]["error"]


def test_a_huge_frame_and_garbage_end_only_their_connection(pair: tuple[Served, Served]) -> None:
    a, b = pair
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    host, port = a.sync.rsplit(":", 1)
    big = connect(f"wss://{host}:{port}/", ssl=context, proxy=None, max_size=None)
    with big as ws, pytest.raises(ConnectionClosed):  # closed by the listener: 1009
        ws.send(b"\x00" * (100 * 1024 * 1024))  # a 100 MB frame
        ws.recv(timeout=WAIT_S)
    with connect(f"wss://{host}:{port}/", ssl=context, proxy=None) as ws:
        ws.send(b"not messagepack at all")
        answer = wire.decode(ws.recv(timeout=WAIT_S))
        assert isinstance(answer, wire.Bye)
    b.cis("memory", "add", "still syncing", "--domain", "public")
    wait_for(lambda: "still syncing" in texts(a), "sync after the bad connections")
    details = [e["detail"] for e in a.cis("network", "audit") if e["event"] == "refused"]
    assert any("a frame over" in d for d in details) and any("not a message" in d for d in details)


def test_a_denied_device_is_cut_off_and_a_solitary_node_syncs_with_nobody(
    pair: tuple[Served, Served],
) -> None:
    a, b = pair
    a.cis("memory", "add", "before the loss", "--domain", "public")
    wait_for(lambda: "before the loss" in texts(b), "a's memory on b")
    entry = b.cis("network", "deny", a.did, "--reason", "laptop stolen", "--expires", "30d")
    assert entry["verdict"] == "deny" and entry["expires_at"] > entry["created_at"]
    a.cis("memory", "add", "after the loss", "--domain", "public")
    done = subprocess.run(
        [CIS, "sync", "--json"], capture_output=True, text=True, env=_env(a.data_dir)
    )
    assert done.returncode == 13 and "not a peer" in json.loads(done.stdout)[0]["error"]
    assert "after the loss" not in texts(b)
    events = [(e["event"], e["did"]) for e in b.cis("network", "audit")]
    assert ("deny", a.did) in events and ("refused", a.did) in events
    assert a.cis("network", "mode", "solitary") == {"mode": "solitary"}
    done = subprocess.run([CIS, "sync"], capture_output=True, text=True, env=_env(a.data_dir))
    assert done.returncode == 11 and "solitary" in done.stderr
    listed = b.cis("network", "list")
    assert listed["mode"] == "whitelist" and listed["entries"][0]["reason"] == "laptop stolen"


def test_two_devices_pair_with_a_one_time_code(tmp_path: Path) -> None:
    with serving(tmp_path / "a") as a, serving(tmp_path / "b") as b:
        made = a.cis("pair", "code")
        assert made["did"] == a.did and re.fullmatch(r"[A-Z2-7]{5}-[A-Z2-7]{5}", made["code"])
        wrong = subprocess.run(
            [CIS, "pair", "join", "AAAAA-AAAAA", a.sync, "--address", b.sync],
            capture_output=True,
            text=True,
            env=_env(b.data_dir),
        )
        assert wrong.returncode == 14 and "pairing code" in wrong.stderr
        assert "void" in wrong.stderr  # every open code is spoilt after a wrong one
        made = a.cis("pair", "code")
        peer = b.cis("pair", "join", made["code"].lower(), a.sync, "--address", b.sync)
        assert peer["did"] == a.did
        assert [p["did"] for p in a.cis("peer", "list")] == [b.did]
        again = subprocess.run(
            [CIS, "pair", "join", made["code"], a.sync, "--address", b.sync],
            capture_output=True,
            text=True,
            env=_env(tmp_path / "c"),
        )
        assert again.returncode != 0  # a code pairs once
        a.cis("memory", "add", "paired and syncing", "--domain", "public")
        wait_for(lambda: "paired and syncing" in texts(b), "a's memory on the paired b")
        events = {e["event"] for e in a.cis("network", "audit")}
        assert {"pair-code", "pair-refused", "paired"} <= events


def test_a_quarantine_holds_what_a_stranger_sends_until_approved(tmp_path: Path) -> None:
    with serving(tmp_path / "a") as a, serving(tmp_path / "b") as b:
        assert b.cis("network", "mode", "quarantine") == {"mode": "quarantine"}
        a.cis("peer", "add", b.did, b.sync)  # a trusts b; b has never heard of a
        a.cis("memory", "add", "the held fact about tapirs", "--domain", "public")
        (batch,) = wait_for(lambda: b.cis("network", "review"), "a's ops held on b")
        assert batch["sender"] == a.did and "tapirs" in batch["preview"]
        assert "the held fact about tapirs" not in texts(b)
        b.cis("memory", "add", "b's public note", "--domain", "public")
        wait_for(lambda: "b's public note" in texts(a), "b's memory on a (b is trusted)")
        done = b.cis("network", "approve", str(batch["id"]))
        assert done["received"]["ops"] == 1 and b.cis("network", "review") == []
        assert "the held fact about tapirs" in texts(b)
        a.cis("memory", "add", "spam from a", "--domain", "public")
        wait_for(lambda: b.cis("network", "review"), "a's next ops held on b")
        assert len(b.cis("network", "reject", "--all")["rejected"]) == 1
        b.cis("network", "allow", a.did)  # trusted from now on: the session starts again
        a.cis("memory", "add", "now trusted", "--domain", "public")
        wait_for(lambda: "now trusted" in texts(b), "a's memory on b once a is allowed")
        assert "spam from a" in texts(b)  # a trusted sender's ops are its word
        events = {e["event"] for e in b.cis("network", "audit")}
        assert {"held", "approved", "rejected", "allow"} <= events


def test_two_nodes_that_both_dial_keep_one_connection(pair: tuple[Served, Served]) -> None:
    import psutil

    a, b = pair

    def dialled(by: Served, to: Served) -> int:
        port = int(to.sync.rsplit(":", 1)[1])
        return sum(
            1
            for c in psutil.Process(by.process.pid).net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"
        )

    wait_for(lambda: dialled(a, b) + dialled(b, a) == 1, "one connection between a and b")
    a.cis("memory", "add", "over the one connection", "--domain", "public")
    wait_for(lambda: "over the one connection" in texts(b), "a's memory on b")
    b.cis("memory", "add", "and back over it", "--domain", "public")
    wait_for(lambda: "and back over it" in texts(a), "b's memory on a")


def test_a_node_restored_from_an_old_backup_that_writes_on_is_seen_as_a_fork(
    tmp_path: Path,
) -> None:
    import shutil

    a_dir = tmp_path / "a"
    subprocess.run([CIS, "init"], env=_env(a_dir), check=True, capture_output=True)

    def on_a(*args: str) -> Any:
        done = subprocess.run(
            [CIS, *args, "--json"], capture_output=True, text=True, env=_env(a_dir)
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    with serving(tmp_path / "b") as b:
        a_did = on_a("node", "id")["did"]
        b.cis("peer", "add", a_did, "127.0.0.1:9")  # a dials; b never needs to
        on_a("peer", "add", b.did, b.sync)
        on_a("memory", "add", "first, before the backup", "--domain", "public")
        assert on_a("sync")[0]["sent"] == 1
        shutil.copytree(a_dir, tmp_path / "backup")
        on_a("memory", "add", "second, after the backup", "--domain", "public")
        assert on_a("sync")[0]["sent"] == 1
        shutil.rmtree(a_dir)
        shutil.copytree(tmp_path / "backup", a_dir)  # a restored, and it writes on
        on_a("memory", "add", "another second, on the restored node", "--domain", "public")
        (report,) = on_a("sync")
        assert "fork" in report["refused"][a_did], report
        assert "another second, on the restored node" not in texts(b)
        assert "fork" in {e["event"] for e in b.cis("network", "audit")}
