"""Sync sessions between nodes: the handshake over TLS 1.3 WebSockets, then ops both ways.

A session starts with each side saying what it holds (Have: a version vector); each side
then sends the ops the other lacks, in frames cut at signatures, and answers every
batch it applies with a new Have. A session that runs on (inside `cis serve`) pushes new
local ops as they land in the log, whichever process wrote them; a one-shot session
(`cis sync`) ends once both sides hold the same. A peer that is removed is cut off at
its next frame or within a quarter of a second.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import apsw
import msgspec
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import CloseCode
from websockets.sync.client import ClientConnection, connect
from websockets.sync.connection import Connection

from ..clock import now_ms
from ..errors import NetworkError, SyncRefused
from ..memory.service import MemoryService
from . import handshake, oplog, tls, wire
from .identity import Identity
from .network import Network, Standing, standing_in
from .peers import Peer, Peers, split_address

POLL_S = 0.25  # how often a session looks for new local ops and for its peer's removal
IDLE_S = 2.0  # a one-shot session with nothing moving for this long is done
HANDSHAKE_S = 10.0
SEEN_EVERY_S = 5.0  # a session in progress writes the peer's last_seen this often


class _StandingChanged(Exception):
    """The peer's standing changed while a frame of its ops was being taken."""


class SyncReport(msgspec.Struct, kw_only=True):
    """What one session moved."""

    peer: str
    sent: int = 0
    received: int = 0
    changed: int = 0
    held: int = 0  # ops the peer sent that are held in quarantine here
    refused: dict[str, str] = {}
    error: str | None = None


def _covers(a: dict[str, int], b: dict[str, int]) -> bool:
    """Whether a holder of `a` has everything a holder of `b` has."""
    return all(a.get(origin, 0) >= seq for origin, seq in b.items())


def _recv(ws: Connection, timeout: float) -> wire.Message:
    frame = ws.recv(timeout=timeout)
    try:
        return wire.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SyncRefused(f"a frame that is not a message ({exc})") from exc


def _expect(ws: Connection, kind: type[wire.Message], timeout: float = HANDSHAKE_S) -> wire.Message:
    message = _recv(ws, timeout)
    if isinstance(message, wire.Bye):
        raise SyncRefused(f"the peer refused: {message.reason}")
    if not isinstance(message, kind):
        raise SyncRefused(f"expected {kind.__name__}, got {type(message).__name__}")
    return message


class Joined(msgspec.Struct, frozen=True):
    """A client's handshake as it ended: the server's DID, both hellos, the
    certificate's hash (what later proofs of the same session bind to)."""

    did: str
    mine: wire.Hello
    theirs: wire.Hello
    certificate: bytes


def client_handshake(ws: Connection, me: Identity, expected: str | None) -> Joined:
    """Prove this node to the server, which must prove the key of its certificate; that
    certificate must be of `expected` (None: of any node, which pairing then checks)."""
    certificate = ws.socket.getpeercert(binary_form=True) or b""  # type: ignore[attr-defined]
    did = tls.peer_did(certificate)
    if did is None:
        raise SyncRefused("the node at this address shows no node certificate")
    if expected is not None and did != expected:
        raise SyncRefused(f"the node at this address is not {expected} (its certificate differs)")
    mine = handshake.hello(me, now_ms())
    ws.send(wire.encode(mine))
    theirs = _expect(ws, wire.Hello)
    proof = _expect(ws, wire.Proof)
    assert isinstance(theirs, wire.Hello) and isinstance(proof, wire.Proof)
    hashed = tls.fingerprint(certificate)
    if theirs.did != did:
        raise SyncRefused(f"the node answered as {theirs.did}, not {did}")
    why = handshake.problem(theirs, proof.signature, "server", mine, theirs, hashed, now_ms())
    if why is not None:
        raise SyncRefused(f"{did}: {why}")
    ws.send(wire.encode(wire.Proof(handshake.prove(me, "client", mine, theirs, hashed))))
    return Joined(did, mine, theirs, hashed)


def server_handshake(
    ws: Connection,
    me: Identity,
    certificate: bytes,
    peers: Peers,
    network: Network,
    theirs: wire.Hello,
) -> None:
    """Check that the node that said `theirs` proves its key and is allowed, or that it
    pairs with a valid one-time code (then it becomes a peer)."""
    known = network.allowed(theirs.did)
    codes = [] if known else peers.codes()
    may_pair = bool(codes) and network.mode() != "solitary" and not network.denied(theirs.did)
    if not known and not may_pair:
        raise SyncRefused(f"{theirs.did[:100]} is not a peer of this node")
    mine = handshake.hello(me, now_ms())
    hashed = tls.fingerprint(certificate)
    ws.send(wire.encode(mine))
    ws.send(wire.encode(wire.Proof(handshake.prove(me, "server", theirs, mine, hashed))))
    proof = _expect(ws, wire.Proof)
    assert isinstance(proof, wire.Proof)
    why = handshake.problem(theirs, proof.signature, "client", theirs, mine, hashed, now_ms())
    if why is not None:
        raise SyncRefused(f"{theirs.did}: {why}")
    if not known:
        pair = _expect(ws, wire.Pair)
        assert isinstance(pair, wire.Pair)
        used = [
            c for c in codes if handshake.pair_matches(pair.mac, c, "client", theirs, mine, hashed)
        ]
        if not used:
            peers.spoil_codes(f"a wrong pairing code from {theirs.did}")
            raise SyncRefused("wrong pairing code (every open code is now void: make a new one)")
        peers.redeem(used[0], theirs.did, pair.address)
        ws.send(
            wire.encode(wire.Paired(handshake.pair_mac(used[0], "server", theirs, mine, hashed)))
        )


def pair_join(me: Identity, peers: Peers, code: str, address: str, mine_at: str) -> Peer:
    """Pair with the node at `address` that made `code`: both prove their keys and the
    code, then each is the other's peer (`mine_at`: where this node's sync listens)."""
    normal = code.replace("-", "").replace(" ", "").upper()
    split_address(mine_at)
    try:
        with _connect(address) as ws:
            joined = client_handshake(ws, me, None)
            mine, theirs, hashed = joined.mine, joined.theirs, joined.certificate
            mac = handshake.pair_mac(normal, "client", mine, theirs, hashed)
            ws.send(wire.encode(wire.Pair(mac, mine_at)))
            answer = _expect(ws, wire.Paired)
            assert isinstance(answer, wire.Paired)
            if not handshake.pair_matches(answer.mac, normal, "server", mine, theirs, hashed):
                raise SyncRefused(f"the node at {address} does not know this code")
            peer = peers.add(joined.did, address, "paired")
            ws.send(wire.encode(wire.Bye("paired")))
            return peer
    except (OSError, WebSocketException, TimeoutError) as exc:
        raise NetworkError(f"cannot reach {address}: {exc or type(exc).__name__}") from exc


def _connect(address: str) -> ClientConnection:
    host, port = split_address(address)
    shown = f"[{host}]" if ":" in host else host
    return connect(
        f"wss://{shown}:{port}/",
        ssl=tls.client_context(),
        server_hostname=host,
        proxy=None,
        compression=None,
        max_size=wire.MAX_FRAME_BYTES,
        open_timeout=HANDSHAKE_S,
    )


class Opened:
    """How many sessions each DID has open to this node now (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by: dict[str, int] = {}

    def get(self, did: str) -> int:
        with self._lock:
            return self._by.get(did, 0)

    @contextlib.contextmanager
    def holding(self, did: str) -> Iterator[None]:
        with self._lock:
            self._by[did] = self._by.get(did, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._by[did] -= 1


class Session:
    """Ops both ways over one connection, after its handshake."""

    def __init__(
        self,
        ws: Connection,
        peer: str,
        memory: MemoryService,
        peers: Peers,
        network: Network,
        *,
        one_shot: bool,
        stop: threading.Event | None = None,
        superseded: Callable[[], bool] | None = None,
    ):
        self.ws = ws
        self.superseded = superseded  # true once a session the other way serves instead
        self.peer = peer
        self.memory = memory
        self.peers = peers
        self.network = network
        self.held = network.standing(peer).held
        self.one_shot = one_shot
        self.stop = stop or threading.Event()
        self.report = SyncReport(peer=peer)
        self._seen = 0.0  # when last_seen was last written (monotonic)

    def run(self) -> SyncReport:
        ws = self.ws
        self._tell()
        theirs: dict[str, int] | None = None
        sent: dict[str, int] = {}
        quiet_since = time.monotonic()
        while not self.stop.is_set():
            if not self._trusted_as_before():
                return self.report
            if self.superseded is not None and self.superseded():
                ws.send(wire.encode(wire.Bye("your session with this node serves instead")))
                return self.report
            mine = self._have()
            wait = POLL_S
            if theirs is not None:
                known = {o: max(theirs.get(o, 0), sent.get(o, 0)) for o in {*theirs, *sent}}
                if self._send(known, sent):
                    quiet_since, wait = time.monotonic(), 0  # read what came meanwhile
                elif self.one_shot and (
                    (_covers(theirs, mine) and _covers(mine, theirs))
                    or time.monotonic() - quiet_since > IDLE_S
                ):
                    ws.send(wire.encode(wire.Bye("in sync")))
                    return self.report
            try:
                message = _recv(ws, wait)
            except TimeoutError:
                continue
            quiet_since = time.monotonic()
            if quiet_since - self._seen > SEEN_EVERY_S:
                self.peers.seen(self.peer)
                self._seen = quiet_since
            if isinstance(message, wire.Have):
                theirs = message.vector
                self._forks(message)
            elif isinstance(message, wire.Ops):
                if not self._take(message):
                    return self.report
            elif isinstance(message, wire.Bye):
                return self.report
            else:
                raise SyncRefused(f"{type(message).__name__} in the middle of a session")
        return self.report

    def _trusted_as_before(self) -> bool:
        """Whether the session goes on as it began; False (the peer told) once what each
        side holds of the other changed; SyncRefused (the peer told) once it was removed."""
        standing = self.network.standing(self.peer)
        if not standing.allowed:
            self.ws.send(wire.encode(wire.Bye("this node no longer syncs with you")))
            raise SyncRefused(f"{self.peer} was removed")
        if standing.held != self.held:
            self.ws.send(wire.encode(wire.Bye("trust changed: connect again")))
            return False
        return True

    def _still_as_before(self, conn: apsw.Connection) -> None:
        """Inside the write that takes a frame: _StandingChanged unless the peer's
        standing is the one the session began with (so a frame that comes after a
        removal is never applied, however close the two)."""
        if standing_in(conn, self.peer) != Standing(True, self.held):
            raise _StandingChanged

    def _tell(self) -> None:
        """Send a Have: what this node holds, with the hashes of its chains' ends."""
        vector = self._have()
        self.ws.send(wire.encode(wire.Have(vector, self.memory.log_heads(vector))))

    def _forks(self, have: wire.Have) -> None:
        """Audit, once a session, each origin whose chain the peer holds otherwise."""
        for origin in self.memory.log_forks(have.vector, have.heads):
            if origin not in self.report.refused:
                why = f"{origin} has two histories here and at {self.peer} (a fork): not merged"
                self.report.refused[origin] = why
                self.network.audit(self.peer, "fork", why)

    def _have(self) -> dict[str, int]:
        """What to tell the peer this node holds (a held peer: its held ops too)."""
        return self.memory.log_vector(self.peer if self.held else None)

    def _send(self, known: dict[str, int], sent: dict[str, int]) -> bool:
        """Send what the peer lacks, one frame; whether there was anything."""
        ops = self.memory.log_since(
            known, limit=wire.OPS_PER_FRAME, max_bytes=wire.OPS_BYTES_PER_FRAME
        )
        if not ops:
            return False
        ids = []
        for body, _ in ops:
            op = oplog.decode(body)
            sent[op.origin] = max(sent.get(op.origin, 0), op.seq)
            ids.append(op.state.id)
        self.ws.send(wire.encode(wire.Ops(ops, self.memory.vectors_of(ids))))
        self.report.sent += len(ops)
        return True

    def _take(self, message: wire.Ops) -> bool:
        """Apply (or hold) a frame of ops and answer with a Have; False (the peer told)
        if the peer's standing changed, the frame not taken."""
        network, gate = self.network, self._still_as_before
        try:
            if self.held:
                received = self.memory.hold(
                    message.ops, self.peer, network.denied, message.vectors, gate
                )
            else:
                received = self.memory.receive(message.ops, network.denied, message.vectors, gate)
        except _StandingChanged:
            if self._trusted_as_before():  # changed and back again: end all the same
                self.ws.send(wire.encode(wire.Bye("trust changed: connect again")))
            return False
        except SyncRefused as exc:
            received = None
            self.report.refused[self.peer] = str(exc)
            network.audit(self.peer, "ops-refused", str(exc))
        if received is not None:
            self.report.received += received.ops
            self.report.changed += received.changed
            self.report.held += received.held
            if received.held:
                network.audit(self.peer, "held", f"{received.held} ops, in quarantine")
            for origin, why in received.refused.items():
                self.report.refused[origin] = why
                network.audit(self.peer, "ops-refused", f"ops of {origin}: {why}")
        self._tell()
        return True


def sync_with(
    me: Identity,
    memory: MemoryService,
    peers: Peers,
    network: Network,
    did: str,
    address: str,
    *,
    one_shot: bool,
    stop: threading.Event | None = None,
    superseded: Callable[[], bool] | None = None,
) -> SyncReport:
    """Connect to a peer and sync: until in step (one-shot), until stopped, or until
    `superseded` says a session the other way took over."""
    if not network.allowed(did):
        raise SyncRefused(f"{did} may not sync with this node ({network.mode()} mode, or denied)")
    try:
        with _connect(address) as ws:
            client_handshake(ws, me, did)
            network.audit(did, "accepted", f"connected to {address}")
            session = Session(
                ws,
                did,
                memory,
                peers,
                network,
                one_shot=one_shot,
                stop=stop,
                superseded=superseded,
            )
            report = session.run()
    except SyncRefused as exc:
        network.audit(did, "refused", str(exc))
        peers.seen(did, str(exc))
        raise
    except (OSError, WebSocketException, TimeoutError) as exc:
        error = f"cannot reach {did} at {address}: {exc or type(exc).__name__}"
        peers.seen(did, error)
        raise NetworkError(error) from exc
    peers.seen(did)
    return report


def serve_session(
    ws: Connection,
    me: Identity,
    certificate: bytes,
    memory: MemoryService,
    peers: Peers,
    network: Network,
    stop: threading.Event,
    opened: Opened,
) -> None:
    """One connection to this node's sync listener, from handshake to end."""
    did = "unknown"
    try:
        hello = _expect(ws, wire.Hello)
        assert isinstance(hello, wire.Hello)
        did = hello.did  # as claimed, until the handshake proves it
        server_handshake(ws, me, certificate, peers, network, hello)
        network.audit(did, "accepted", f"connection from {ws.remote_address[0]}")
        with opened.holding(did):
            Session(ws, did, memory, peers, network, one_shot=False, stop=stop).run()
        peers.seen(did)
    except SyncRefused as exc:
        network.audit(did, "refused", str(exc))
        with contextlib.suppress(ConnectionClosed, OSError):
            ws.send(wire.encode(wire.Bye(str(exc))))
    except ConnectionClosed as exc:
        if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
            network.audit(did, "refused", f"a frame over {wire.MAX_FRAME_BYTES} bytes")
    except (TimeoutError, OSError):
        pass
