"""Many threads on one node at once, as a server will have them."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from cis import Node
from cis.yielding import SWITCH_S


def test_searches_and_writes_from_many_threads(node: Node) -> None:
    node.memory.add_many({"text": f"seed fact {i} about harbours and ships"} for i in range(50))
    node.memory.flush()
    errors: list[BaseException] = []
    written: list[str] = []

    def searcher(n: int) -> None:
        try:
            for i in range(15):
                hits = node.memory.search(f"ships in harbour {n} {i}", limit=5)
                assert 0 < len(hits) <= 5
                assert all(0.0 <= h.score <= 1.0 for h in hits)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    def writer(n: int) -> None:
        try:
            for i in range(20):
                m = node.memory.add(f"writer {n} harbour note {i}", scope=f"agent/w{n}")
                written.append(m.id)
                assert node.memory.get(m.id) == m
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(8)]
    threads += [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert len(written) == 40
    assert node.memory.count() == 90
    assert node.memory.flush(timeout=60)
    status = node.status()
    assert status.vectors == 90 and status.pending_embeddings == 0
    found = node.memory.search("harbour note", scope="agent/w1", mode="text", limit=50)
    assert len(found) == 20


def test_searches_from_many_threads_take_turns(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search is Python work under the interpreter lock: two at once only share a core
    and pay for the switching, so a Searcher runs one at a time (README, Figures)."""
    node.memory.add_many({"text": f"fact {i} about harbours and ships"} for i in range(20))
    searcher = node.memory.searcher
    inside, most, lock = [0], [0], threading.Lock()
    search = searcher._search

    def counted(*args: Any) -> Any:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            return search(*args)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(searcher, "_search", counted)
    threads = [
        threading.Thread(
            target=lambda n=n: [
                node.memory.search(f"ships {n} {i}", mode="text") for i in range(10)
            ]
        )
        for n in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert most[0] == 1


def test_a_node_with_background_threads_shares_the_interpreter(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with Node.open(tmp_path / "a", background=False):
            assert sys.getswitchinterval() == 0.005  # a short CLI call changes nothing
        with Node.open(tmp_path / "a"):
            assert sys.getswitchinterval() == SWITCH_S
        sys.setswitchinterval(SWITCH_S / 2)
        with Node.open(tmp_path / "a"):
            assert sys.getswitchinterval() == SWITCH_S / 2  # a host's shorter one stays
    finally:
        sys.setswitchinterval(before)
