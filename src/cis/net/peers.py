"""The peers a node syncs with (each one trusted), and one-time pairing codes."""

from __future__ import annotations

import base64
import builtins
import os
import re

import msgspec

from ..clock import now_ms
from ..errors import InvalidInput, NotFound
from ..store.sqlite import Database
from .identity import public_key
from .network import record, verdict

_ADDRESS = re.compile(r"(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})")


class Peer(msgspec.Struct, frozen=True, kw_only=True):
    did: str
    address: str  # host:port of its sync listener
    added_at: int
    last_seen: int | None = None
    last_error: str | None = None


MAX_NEARBY = 256  # nodes heard kept, the latest


class Nearby(msgspec.Struct, frozen=True, kw_only=True):
    """A node heard on the local network, and whether it is a peer here."""

    did: str
    address: str
    heard_at: int
    peer: bool


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of HOST:PORT or [IPV6]:PORT; InvalidInput if it is neither."""
    found = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if found is None or not 0 < int(found.group(3)) < 65536:
        raise InvalidInput(f"{address!r} is not HOST:PORT (a sync port, such as 7677)")
    return found.group(1) or found.group(2), int(found.group(3))


class Peers:
    def __init__(self, db: Database):
        self.db = db

    def add(self, did: str, address: str, event: str = "added") -> Peer:
        """Allow `did` and sync with it at `address` (again: a new address); audited
        as `event`."""
        public_key(did)
        split_address(address)
        peer = Peer(did=did, address=address, added_at=now_ms())
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO peers(did, address, added_at) VALUES (?,?,?)"
                " ON CONFLICT(did) DO UPDATE SET address = excluded.address",
                (did, address, peer.added_at),
            )
            record(conn, did, event, address)
        return self.get(did) or peer

    def remove(self, did: str) -> Peer:
        """Stop syncing with `did`; a session with it ends at once."""
        found = self.get(did)
        if found is None:
            raise NotFound(f"no peer {did!r}; `cis peer list` shows them")
        with self.db.write() as conn:
            conn.execute("DELETE FROM peers WHERE did = ?", (did,))
            record(conn, did, "removed", found.address)
        return found

    def get(self, did: str) -> Peer | None:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT did, address, added_at, last_seen, last_error FROM peers WHERE did = ?",
                (did,),
            ).fetchall()
        return _peer(rows[0]) if rows else None

    def list(self) -> list[Peer]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT did, address, added_at, last_seen, last_error FROM peers ORDER BY did"
            ).fetchall()
        return [_peer(r) for r in rows]

    def heard(self, did: str, address: str) -> None:
        """A node advertised its listener at `address` on the local network: a hint. A
        DID allowed here (`cis network allow`) that is not a peer yet becomes one."""
        public_key(did)
        split_address(address)
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO nearby VALUES (?,?,?)", (did, address, now_ms()))
            conn.execute(  # a network that announces thousands of DIDs fills nothing
                "DELETE FROM nearby WHERE did NOT IN"
                " (SELECT did FROM nearby ORDER BY heard_at DESC LIMIT ?)",
                (MAX_NEARBY,),
            )
            if (
                verdict(conn, did) == "allow"
                and conn.execute(
                    "INSERT INTO peers(did, address, added_at) VALUES (?,?,?)"
                    " ON CONFLICT(did) DO NOTHING RETURNING did",
                    (did, address, now_ms()),
                ).fetchall()
            ):
                record(conn, did, "discovered", address)

    def nearby(self) -> builtins.list[Nearby]:
        """The nodes heard on the local network, latest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT n.did, n.address, n.heard_at, p.did IS NOT NULL FROM nearby n"
                " LEFT JOIN peers p ON p.did = n.did ORDER BY n.heard_at DESC"
            ).fetchall()
        return [
            Nearby(did=r[0], address=r[1], heard_at=r[2], peer=bool(r[3]))  # type: ignore[arg-type]
            for r in rows
        ]

    def addresses(self, did: str) -> builtins.list[str]:
        """Where to reach a peer: its address, then where it was last heard if elsewhere."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT address FROM peers WHERE did = ?"
                " UNION ALL SELECT address FROM nearby WHERE did = ?",
                (did, did),
            ).fetchall()
        return builtins.list(dict.fromkeys(str(r[0]) for r in rows))

    def seen(self, did: str, error: str | None = None) -> None:
        """A session with `did` went well (error None) or failed."""
        with self.db.write() as conn:
            if error is None:
                conn.execute(
                    "UPDATE peers SET last_seen = ?, last_error = NULL WHERE did = ?",
                    (now_ms(), did),
                )
            else:
                conn.execute("UPDATE peers SET last_error = ? WHERE did = ?", (error[:500], did))

    def new_code(self, ttl_ms: int) -> tuple[str, int]:
        """A one-time pairing code (50 random bits, as XXXXX-XXXXX) and its expiry."""
        raw = base64.b32encode(os.urandom(10)).decode()[:10]
        expires = now_ms() + ttl_ms
        with self.db.write() as conn:
            conn.execute("DELETE FROM pair_codes WHERE expires_at < ?", (now_ms(),))
            conn.execute("INSERT INTO pair_codes VALUES (?, ?)", (raw, expires))
            record(conn, "-", "pair-code", f"valid until {expires}")
        return f"{raw[:5]}-{raw[5:]}", expires

    def codes(self) -> builtins.list[str]:
        """The pairing codes that are still valid."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT code FROM pair_codes WHERE expires_at >= ?", (now_ms(),)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def redeem(self, code: str, did: str, address: str) -> Peer:
        """Use up `code`: `did` becomes a peer at `address`."""
        public_key(did)
        split_address(address)
        with self.db.write() as conn:
            gone = conn.execute("DELETE FROM pair_codes WHERE code = ? RETURNING code", (code,))
            if not gone.fetchall():
                raise InvalidInput("that pairing code was used already")
            conn.execute(
                "INSERT INTO peers(did, address, added_at) VALUES (?,?,?)"
                " ON CONFLICT(did) DO UPDATE SET address = excluded.address",
                (did, address, now_ms()),
            )
            record(conn, did, "paired", address)
        found = self.get(did)
        assert found is not None
        return found

    def spoil_codes(self, why: str) -> None:
        """Drop every pairing code (after a wrong one: no guessing at leisure)."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM pair_codes")
            record(conn, "-", "pair-refused", why)


def _peer(row: tuple[object, ...]) -> Peer:
    return Peer(
        did=row[0],  # type: ignore[arg-type]
        address=row[1],  # type: ignore[arg-type]
        added_at=row[2],  # type: ignore[arg-type]
        last_seen=row[3],  # type: ignore[arg-type]
        last_error=row[4],  # type: ignore[arg-type]
    )
