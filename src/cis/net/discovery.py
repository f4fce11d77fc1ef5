"""Discovery on the local network: `cis serve` advertises its sync listener over mDNS as
`_cis._tcp.local.` (its DID in the TXT record) and listens for other nodes'. What it
hears is a hint, never trust: a node heard is connected to only if it is a peer or a DID
allowed here, and the TLS handshake then proves it is the DID it claimed."""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable

import ifaddr
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from ..errors import CISError, InvalidInput
from .identity import public_key

SERVICE = "_cis._tcp.local."
LOOKUP_MS = 3000
REPEAT_S = 60.0  # the same node at the same address is told once a minute at most


def _own_addresses() -> list[str]:
    """This host's IPv4 addresses."""
    return [ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str)]


def _instance(did: str) -> str:
    return f"cis-{did[-16:]}"  # a DNS label holds 63 bytes; a did:key is 56 characters


class Discovery:
    """Advertise one sync listener and report each other node heard: heard(did, address)."""

    def __init__(self, did: str, host: str, port: int, heard: Callable[[str, str], None]):
        self.did = did
        self.heard = heard
        hosts = [host] if host not in ("0.0.0.0", "") else _own_addresses()
        self.addresses = [a for a in hosts if not a.startswith("127.")]
        self.port = port
        self._names: queue.Queue[str | None] = queue.Queue(maxsize=1024)
        self._told: dict[tuple[str, str], float] = {}
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Advertise and browse; OSError if the network allows no multicast."""
        logging.getLogger("zeroconf").setLevel(logging.ERROR)  # an offline link is no news
        self._zc = Zeroconf(ip_version=IPVersion.V4Only)
        info = ServiceInfo(
            SERVICE,
            f"{_instance(self.did)}.{SERVICE}",
            port=self.port,
            properties={"did": self.did},
            addresses=[socket.inet_aton(a) for a in self.addresses],
            server=f"{_instance(self.did)}.local.",
        )
        self._zc.register_service(info, allow_name_change=True)
        self._info = info
        ServiceBrowser(self._zc, SERVICE, handlers=[self._changed])
        self._thread = threading.Thread(target=self._resolve, name="cis-discovery", daemon=True)
        self._thread.start()

    def _changed(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        # on zeroconf's own loop: no blocking lookups here, the resolver thread does them
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            with contextlib.suppress(queue.Full):  # a flood of announcements is dropped
                self._names.put_nowait(name)

    def _resolve(self) -> None:
        while (name := self._names.get()) is not None:
            zc = self._zc
            info = ServiceInfo(SERVICE, name)
            if zc is None or not info.request(zc, LOOKUP_MS):
                continue
            did = (info.properties or {}).get(b"did")
            addresses = info.parsed_addresses(IPVersion.V4Only)
            if not did or not addresses or not info.port:
                continue
            try:
                found = did.decode()
                public_key(found)
            except (UnicodeDecodeError, InvalidInput):
                continue  # not a node's DID: nothing to connect to
            heard = (found, f"{addresses[0]}:{info.port}")
            now = time.monotonic()
            if found != self.did and now - self._told.get(heard, -REPEAT_S) >= REPEAT_S:
                if len(self._told) > 4096:  # a flood of names: forget, do not grow
                    self._told.clear()
                self._told[heard] = now
                with contextlib.suppress(CISError):  # an address this node cannot use
                    self.heard(*heard)

    def close(self) -> None:
        """Withdraw the advertisement and stop; a second call does nothing."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        self._names.put(None)
        if self._info is not None:
            zc.unregister_service(self._info)
        zc.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
