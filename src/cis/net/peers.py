"""The peers a node syncs with, its trust lists, and the audit of what sync accepted and
refused.

Who may sync, by the network mode: `whitelist` (the default) its peers and the DIDs
allowed; `open` any DID that proves its key; `solitary` nobody, in or out. A DID denied
is refused in every mode (deny wins), its ops too when another peer passes them on.
Allow and deny entries may expire."""

from __future__ import annotations

import base64
import builtins
import os
import re

import apsw
import msgspec

from ..clock import now_ms
from ..errors import InvalidInput, NotFound
from ..store.sqlite import Database
from .identity import public_key

MODES = ("whitelist", "open", "solitary")
VERDICTS = ("allow", "deny")
_ADDRESS = re.compile(r"(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})")
MAX_AUDIT = 1000


class Peer(msgspec.Struct, frozen=True, kw_only=True):
    did: str
    address: str  # host:port of its sync listener
    added_at: int
    last_seen: int | None = None
    last_error: str | None = None


class AclEntry(msgspec.Struct, frozen=True, kw_only=True):
    did: str
    verdict: str  # allow or deny
    reason: str
    created_at: int
    expires_at: int | None = None


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
        """Whether `did` may sync with this node now."""
        with self.db.read() as conn:
            mode = conn.execute("SELECT value FROM meta WHERE name = 'network_mode'").fetchall()
            verdict = conn.execute(
                "SELECT verdict FROM acl WHERE did = ? AND coalesce(expires_at, ?) >= ?",
                (did, now_ms(), now_ms()),
            ).fetchall()
            peer = conn.execute("SELECT 1 FROM peers WHERE did = ?", (did,)).fetchall()
        current = str(mode[0][0]) if mode else "whitelist"
        if current == "solitary" or (verdict and verdict[0][0] == "deny"):
            return False
        return current == "open" or bool(peer) or bool(verdict)

    def denied(self, did: str) -> bool:
        """Whether `did` is denied now (its ops are refused whoever passes them on)."""
        with self.db.read() as conn:
            return bool(
                conn.execute(
                    "SELECT 1 FROM acl WHERE did = ? AND verdict = 'deny'"
                    " AND coalesce(expires_at, ?) >= ?",
                    (did, now_ms(), now_ms()),
                ).fetchall()
            )

    def mode(self) -> str:
        with self.db.read() as conn:
            found = conn.execute("SELECT value FROM meta WHERE name = 'network_mode'").fetchall()
        return str(found[0][0]) if found else "whitelist"

    def set_mode(self, mode: str) -> str:
        """Set the network mode; a session that the new mode refuses ends at once."""
        if mode not in MODES:
            raise InvalidInput(f"unknown network mode {mode!r}: use one of {', '.join(MODES)}")
        with self.db.write() as conn:
            conn.execute("UPDATE meta SET value = ? WHERE name = 'network_mode'", (mode,))
            self._audit(conn, "-", "mode", mode)
        return mode

    def judge(
        self, did: str, verdict: str, reason: str = "", expires_at: int | None = None
    ) -> AclEntry:
        """Allow or deny `did` (replacing an earlier verdict), until `expires_at` if given."""
        public_key(did)
        if verdict not in VERDICTS:
            raise InvalidInput(f"unknown verdict {verdict!r}: use allow or deny")
        entry = AclEntry(
            did=did, verdict=verdict, reason=reason, created_at=now_ms(), expires_at=expires_at
        )
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO acl VALUES (?,?,?,?,?)",
                (did, verdict, reason, expires_at, entry.created_at),
            )
            self._audit(conn, did, verdict, reason or "-")
        return entry

    def acl(self) -> builtins.list[AclEntry]:
        """Every allow and deny entry, expired ones too (they no longer count)."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT did, verdict, reason, created_at, expires_at FROM acl ORDER BY did"
            ).fetchall()
        return [
            AclEntry(did=r[0], verdict=r[1], reason=r[2], created_at=r[3], expires_at=r[4])  # type: ignore[arg-type]
            for r in rows
        ]

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
            self._audit(conn, "-", "pair-code", f"valid until {expires}")
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
            self._audit(conn, did, "paired", address)
        found = self.get(did)
        assert found is not None
        return found

    def spoil_codes(self, why: str) -> None:
        """Drop every pairing code (after a wrong one: no guessing at leisure)."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM pair_codes")
            self._audit(conn, "-", "pair-refused", why)

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
