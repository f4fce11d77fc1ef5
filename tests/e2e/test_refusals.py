"""A hostile peer against a real `cis serve`, over the real TLS listener: a replayed
handshake, a clock an hour ahead, forged ops; each refused and audited while the node
keeps serving. Frames are recorded at the protocol layer and the raw bytes on the wire
through a relay: no private memory in the first, no plaintext at all in the second."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection

from cis.clock import COUNTER_BITS, now_ms
from cis.memory.validate import new_id
from cis.net import handshake, oplog, tls, wire
from cis.net.identity import Identity
from cis.net.merge import create
from cis.net.sync import _connect, client_handshake

from .test_sync import WAIT_S, Served, serving, texts

HOUR_MS = 3600 * 1000


@contextmanager
def relay(upstream: str) -> Iterator[tuple[str, list[bytes]]]:
    """A TCP relay on 127.0.0.1 to `upstream`: its address, and every byte it carried."""
    host, port = upstream.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    carried: list[bytes] = []
    sockets: list[socket.socket] = [listener]

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                carried.append(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        try:
            while True:
                client, _ = listener.accept()
                server = socket.create_connection((host, int(port)))
                sockets.extend((client, server))
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()
        except OSError:
            pass  # the listener closed

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", carried
    finally:
        for s in sockets:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the listener too
            s.close()
        thread.join(timeout=WAIT_S)


class Recorder:
    """Every frame the node sent this client, decoded at the protocol layer."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.frames: list[wire.Message] = []

    def recv(self) -> wire.Message:
        message = wire.decode(self.ws.recv(timeout=WAIT_S))
        self.frames.append(message)
        return message

    def until(self, kind: type[wire.Message]) -> wire.Message:
        while not isinstance(message := self.recv(), kind):
            pass
        return message


def _op(me: Identity, seq: int, prev: bytes, text: str, hlc: int | None = None) -> oplog.Op:
    stamp = hlc if hlc is not None else now_ms() << COUNTER_BITS
    state = create(
        new_id(), "global", None, now_ms(), stamp, me.did, {"text": text, "domain": "public"}
    )
    return oplog.Op(origin=me.did, seq=seq, hlc=stamp, prev=prev, state=state)


def _signed(me: Identity, op: oplog.Op) -> tuple[bytes, bytes]:
    return oplog.encode(op), oplog.sign(me, op)


def _events(node: Served, did: str) -> list[tuple[str, str]]:
    return [(e["event"], e["detail"]) for e in node.cis("network", "audit") if e["did"] == did]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "a") as a:
        yield a


def test_hostile_ops_are_refused_and_the_session_survives(node: Served) -> None:
    me = Identity(os.urandom(32))
    node.cis("peer", "add", me.did, "127.0.0.1:9")  # a peer that never listens
    node.cis("memory", "add", "PRIVATE-MARKER the safe code is 1234")
    node.cis("memory", "add", "PUBLIC-MARKER the office opens at nine", "--domain", "public")
    with relay(node.sync) as (address, carried), _connect(address) as ws:
        client_handshake(ws, me, node.did)
        frames = Recorder(ws)
        frames.until(wire.Have)
        ws.send(wire.encode(wire.Have({})))  # this client holds nothing: all comes
        frames.until(wire.Ops)

        ahead = _op(me, 1, oplog.GENESIS, "from an hour ahead", (now_ms() + HOUR_MS) << 16)
        ws.send(wire.encode(wire.Ops([_signed(me, ahead)])))
        frames.until(wire.Have)
        other = Identity(os.urandom(32))  # ops in another's name, signed with my key
        forged = _op(other, 1, oplog.GENESIS, "in another's name")
        ws.send(wire.encode(wire.Ops([(oplog.encode(forged), oplog.sign(me, forged))])))
        frames.until(wire.Have)
        good = _op(me, 1, oplog.GENESIS, "an honest op after the hostile ones")
        body, signature = _signed(me, good)
        tampered = body.replace(b"honest", b"HONEST")
        ws.send(wire.encode(wire.Ops([(tampered, signature)])))
        frames.until(wire.Have)
        ws.send(wire.encode(wire.Ops([(body, signature)])))  # the connection survived
        have = frames.until(wire.Have)
        assert isinstance(have, wire.Have) and have.vector.get(me.did) == 1
        ws.send(wire.encode(wire.Bye("done")))
    shown = texts(node)
    assert "an honest op after the hostile ones" in shown
    assert not {"from an hour ahead", "in another's name"} & shown
    refused = [d for e, d in _events(node, me.did) if e == "ops-refused"]
    assert any("ahead" in d for d in refused), refused
    assert any("signature" in d and other.did in d for d in refused), refused
    assert sum("signature" in d for d in refused) == 2, refused
    decoded = [b for f in frames.frames if isinstance(f, wire.Ops) for b, _ in f.ops]
    assert any(b"PUBLIC-MARKER" in b for b in decoded)  # what travels, in the frames
    assert not any(b"PRIVATE-MARKER" in b for b in decoded)  # private never does
    raw = b"".join(carried)
    assert len(raw) > 1000 and b"MARKER" not in raw and b"honest" not in raw  # TLS only


def test_a_replayed_or_late_handshake_is_refused(node: Served) -> None:
    me = Identity(os.urandom(32))
    node.cis("peer", "add", me.did, "127.0.0.1:9")
    sent: list[bytes] = []
    with _connect(node.sync) as ws:
        original = ws.send

        def recorded(frame: bytes) -> None:
            sent.append(frame)
            original(frame)

        ws.send = recorded  # type: ignore[assignment, method-assign]
        client_handshake(ws, me, node.did)
        ws.send(wire.encode(wire.Bye("done")))
    hello, proof = sent[:2]
    with _connect(node.sync) as ws:  # the same two frames again: the server's nonce is new
        ws.send(hello)
        assert isinstance(wire.decode(ws.recv(timeout=WAIT_S)), wire.Hello)
        assert isinstance(wire.decode(ws.recv(timeout=WAIT_S)), wire.Proof)
        ws.send(proof)
        answer = wire.decode(ws.recv(timeout=WAIT_S))
        assert isinstance(answer, wire.Bye) and "does not verify" in answer.reason
    with _connect(node.sync) as ws:  # a hello an hour ahead, with a valid proof of it
        late = handshake.hello(me, now_ms() + HOUR_MS)
        ws.send(wire.encode(late))
        theirs = wire.decode(ws.recv(timeout=WAIT_S))
        wire.decode(ws.recv(timeout=WAIT_S))
        assert isinstance(theirs, wire.Hello)
        certificate = ws.socket.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        signature = handshake.prove(me, "client", late, theirs, tls.fingerprint(certificate))
        ws.send(wire.encode(wire.Proof(signature)))
        answer = wire.decode(ws.recv(timeout=WAIT_S))
        assert isinstance(answer, wire.Bye) and "clock" in answer.reason
    refused = [d for e, d in _events(node, me.did) if e == "refused"]
    assert any("does not verify" in d for d in refused) and any("clock" in d for d in refused)
    with _connect(node.sync) as ws:  # and the node serves on
        assert client_handshake(ws, me, node.did).did == node.did
        ws.send(wire.encode(wire.Bye("done")))
