"""The peers a node syncs with, and the audit of what sync accepted and refused.

Until trust lists come (ACL modes), a node syncs with the peers it was told of and no
other: a DID is allowed exactly when it is in this list."""

from __future__ import annotations

import builtins
import re

import apsw
import msgspec

from ..clock import now_ms
from ..errors import InvalidInput, NotFound
from ..store.sqlite import Database
from .identity import public_key

_ADDRESS = re.compile(r"(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})")
MAX_AUDIT = 1000


class Peer(msgspec.Struct, frozen=True, kw_only=True):
    did: str
    address: str  # host:port of its sync listener
    added_at: int
    last_seen: int | None = None
    last_error: str | None = None


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    at: int
    did: str
    event: str  # accepted, refused, ops-refused, added, removed
    detail: str


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of HOST:PORT or [IPV6]:PORT; InvalidInput if it is neither."""
    found = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if found is None or not 0 < int(found.group(3)) < 65536:
        raise InvalidInput(f"{address!r} is not HOST:PORT (a sync port, such as 7677)")
    return found.group(1) or found.group(2), int(found.group(3))


class Peers:
    def __init__(self, db: Database):
        self.db = db

    def add(self, did: str, address: str) -> Peer:
        """Allow `did` and sync with it at `address` (again: a new address)."""
        public_key(did)
        split_address(address)
        peer = Peer(did=did, address=address, added_at=now_ms())
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO peers(did, address, added_at) VALUES (?,?,?)"
                " ON CONFLICT(did) DO UPDATE SET address = excluded.address",
                (did, address, peer.added_at),
            )
            self._audit(conn, did, "added", address)
        return self.get(did) or peer

    def remove(self, did: str) -> Peer:
        """Stop syncing with `did`; a session with it ends at once."""
        found = self.get(did)
        if found is None:
            raise NotFound(f"no peer {did!r}; `cis peer list` shows them")
        with self.db.write() as conn:
            conn.execute("DELETE FROM peers WHERE did = ?", (did,))
            self._audit(conn, did, "removed", found.address)
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

    def allowed(self, did: str) -> bool:
        with self.db.read() as conn:
            return bool(conn.execute("SELECT 1 FROM peers WHERE did = ?", (did,)).fetchall())

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

    def audit(self, did: str, event: str, detail: str) -> None:
        with self.db.write() as conn:
            self._audit(conn, did, event, detail)

    @staticmethod
    def _audit(conn: apsw.Connection, did: str, event: str, detail: str) -> None:
        conn.execute(
            "INSERT INTO audit(at, did, event, detail) VALUES (?,?,?,?)",
            (now_ms(), did[:100], event, detail[:1000]),
        )

    def audit_log(self, limit: int = MAX_AUDIT) -> builtins.list[AuditEntry]:
        """The latest audit entries, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT at, did, event, detail FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return [AuditEntry(at=r[0], did=r[1], event=r[2], detail=r[3]) for r in reversed(rows)]


def _peer(row: tuple[object, ...]) -> Peer:
    return Peer(
        did=row[0],  # type: ignore[arg-type]
        address=row[1],  # type: ignore[arg-type]
        added_at=row[2],  # type: ignore[arg-type]
        last_seen=row[3],  # type: ignore[arg-type]
        last_error=row[4],  # type: ignore[arg-type]
    )
