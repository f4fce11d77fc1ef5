"""Sync sessions in one process, over real TLS WebSockets on 127.0.0.1: what a session
does when its peer's standing changes at the worst moment."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cis import Node


def _removed(b: Node, did: str) -> None:
    b.peers.remove(did)


def _no_longer_heard(b: Node, did: str) -> None:
    b.network.set_mode("whitelist")  # from quarantine: only peers now


@pytest.mark.parametrize(
    ("held", "cut_off"),
    [(False, _removed), (True, _no_longer_heard)],
    ids=["a peer removed", "a held stranger shut out"],
)
def test_a_frame_that_lands_as_its_sender_is_cut_off_is_not_taken(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    held: bool,
    cut_off: Callable[[Node, str], None],
) -> None:
    a = Node.open(tmp_path / "a", background=False)
    b = Node.open(tmp_path / "b", background=False)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        if held:
            b.network.set_mode("quarantine")  # a stranger's ops are held
        else:
            b.peers.add(a.identity.did, "127.0.0.1:1")  # b trusts a (and never reaches it)
        a.peers.add(b.identity.did, f"127.0.0.1:{listener.getsockname()[1]}")
        b.sync.start(listener)
        a.memory.add("sent as its sender is cut off", domain="public")
        name = "hold" if held else "receive"
        take = getattr(b.memory, name)

        def cut_off_first(*args: Any, **kwargs: Any) -> Any:
            # after every look the session takes at a's standing outside the write
            cut_off(b, a.identity.did)
            return take(*args, **kwargs)

        monkeypatch.setattr(b.memory, name, cut_off_first)
        (report,) = a.sync.now(b.identity.did)
        assert report.sent == 1  # the frame went; b did not take it
        assert b.memory.list() == [] and b.memory.log_vector() == {}
        assert b.memory.held() == []
    finally:
        a.close(), b.close()
