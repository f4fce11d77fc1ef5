"""The cluster side of a node: its peers, one-shot sync, and the sync listener and
connectors that `cis serve` runs beside HTTP and MCP."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from websockets.sync.server import Server, ServerConnection, serve

from ..errors import CISError, Forbidden, NetworkError, NotFound
from ..memory.service import MemoryService
from . import tls, wire
from .discovery import Discovery
from .identity import Identity
from .network import Network
from .peers import Peer, Peers
from .sync import HANDSHAKE_S, Opened, SyncReport, pair_join, serve_session, sync_with

log = logging.getLogger("cis.net")
BACKOFF_S = (1, 2, 5, 10, 30)  # waits between attempts to reach a peer that is away


class SyncService:
    def __init__(
        self,
        identity: Identity,
        memory: MemoryService,
        peers: Peers,
        network: Network,
        data_dir: Path,
    ):
        self.identity = identity
        self.memory = memory
        self.peers = peers
        self.network = network
        self.data_dir = data_dir
        self._stop = threading.Event()
        self._server: Server | None = None
        self._discovery: Discovery | None = None
        self._incoming = Opened()  # sessions peers opened to this node
        self._threads: list[threading.Thread] = []

    def now(self, did: str | None = None) -> list[SyncReport]:
        """Sync once with `did`, or with every peer, until each is in step; a peer that
        cannot be reached or refuses shows its error in its report."""
        if self.network.mode() == "solitary":
            raise Forbidden("this node is solitary: it syncs with nobody (`cis network mode`)")
        peers = self.peers.list()
        if did is not None:
            peers = [p for p in peers if p.did == did]
            if not peers:
                raise NotFound(f"no peer {did!r}; add it with `cis peer add DID HOST:PORT`")
        reports = []
        for peer in peers:
            try:
                reports.append(self._session(peer.did, one_shot=True))
            except CISError as exc:
                reports.append(SyncReport(peer=peer.did, error=str(exc)))
        return reports

    def _yields(self, did: str) -> bool:
        """Whether this node leaves the session with `did` to the one `did` opened: of
        two nodes that both dial, the one of the greater DID stops dialling while the
        other's session runs (so each pair syncs over one connection, not two)."""
        return self.identity.did > did and self._incoming.get(did) > 0

    def _session(self, did: str, *, one_shot: bool) -> SyncReport:
        """A session with `did` at the first of its addresses that answers (its own,
        then where it was last heard on the local network)."""
        error = NetworkError(f"no address for {did}")
        for address in self.peers.addresses(did):
            try:
                return sync_with(
                    self.identity,
                    self.memory,
                    self.peers,
                    self.network,
                    did,
                    address,
                    one_shot=one_shot,
                    stop=None if one_shot else self._stop,  # `now` runs after `close` too
                    superseded=None if one_shot else lambda: self._yields(did),
                )
            except NetworkError as exc:
                error = exc
        raise error

    def pair(self, code: str, address: str, mine_at: str) -> Peer:
        """Join the node at `address` that showed `code` (`cis pair code` there); this
        node's own sync listener is at `mine_at`, for that node to reach it."""
        if self.network.mode() == "solitary":
            raise Forbidden("this node is solitary: it pairs with nobody (`cis network mode`)")
        return pair_join(self.identity, self.peers, code, address, mine_at)

    def start(self, listener: socket.socket | None, discovery: bool = False) -> None:
        """Listen for peers on `listener` (None: do not listen), and keep a session
        with every known peer, reconnecting with backoff; with `discovery`, advertise
        the listener on the local network and hear other nodes (hints, see discovery)."""
        if listener is not None and discovery:
            self._advertise(*listener.getsockname()[:2])
        if listener is not None:
            certificate = tls.certificate(self.identity).public_bytes(Encoding.DER)

            def handler(ws: ServerConnection) -> None:
                serve_session(
                    ws,
                    self.identity,
                    certificate,
                    self.memory,
                    self.peers,
                    self.network,
                    self._stop,
                    self._incoming,
                )

            self._server = serve(
                handler,
                sock=listener,
                ssl=tls.server_context(self.identity, self.data_dir),
                compression=None,
                max_size=wire.MAX_FRAME_BYTES,
                open_timeout=10,
            )
            self._spawn(self._server.serve_forever, "cis-sync-listener")
        self._spawn(self._connect_all, "cis-sync-peers")

    def _advertise(self, host: str, port: int) -> None:
        """Start discovery, unless the listener is on loopback or multicast fails (then
        peers are reached by their addresses alone)."""
        found = Discovery(self.identity.did, host, port, self.peers.heard)
        if not found.addresses:
            return  # a listener on loopback: nobody on the network could reach it
        try:
            found.start()
        except OSError as exc:
            log.warning("no discovery on the local network: %s", exc)
            found.close()
        else:
            self._discovery = found

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _connect_all(self) -> None:
        """A session thread per peer, started when a peer is added."""
        running: dict[str, threading.Thread] = {}
        while not self._stop.is_set():
            for peer in self.peers.list():
                if not self.network.allowed(peer.did):  # solitary, or the peer is denied
                    continue
                thread = running.get(peer.did)
                if thread is None or not thread.is_alive():
                    running[peer.did] = thread = threading.Thread(
                        target=self._keep, args=(peer.did,), name="cis-sync-peer", daemon=True
                    )
                    thread.start()
            self._stop.wait(1.0)
        for thread in running.values():  # each ends within a poll or a connect timeout
            thread.join()

    def _keep(self, did: str) -> None:
        """Stay in session with one peer while it is a peer, with backoff between tries."""
        failures = 0
        while not self._stop.is_set():
            peer = self.peers.get(did)
            if peer is None or not self.network.allowed(did):
                return  # started again by _connect_all if it is allowed again
            if self._yields(did):
                self._stop.wait(1.0)  # its session serves; dial again should it end
                continue
            try:
                self._session(did, one_shot=False)
                failures = 0
            except (NetworkError, CISError):
                failures += 1
            self._stop.wait(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])

    def close(self) -> None:
        self._stop.set()
        if self._discovery is not None:
            self._discovery.close()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=2 * HANDSHAKE_S)
