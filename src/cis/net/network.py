"""Who may sync with this node (the network mode and the trust lists), the quarantine
of what untrusted senders sent, and the audit of it all.

The modes: `whitelist` (the default) syncs with its peers and the DIDs allowed; `open`
with any DID that proves its key; `quarantine` likewise, but what a DID that is neither
a peer nor allowed sends is verified and held apart until approved; `solitary` with
nobody, in or out. A DID may also be put in quarantine by name, in any mode but
solitary. A DID denied is refused in every mode (deny wins), its ops too when another
peer passes them on. Entries may expire."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import apsw
import msgspec

from ..clock import now_ms
from ..errors import InvalidInput
from ..memory.quarantine import HeldBatch
from ..memory.receive import Received
from ..memory.service import MemoryService
from ..store.sqlite import Database
from .identity import public_key

MODES = ("whitelist", "open", "quarantine", "solitary")
VERDICTS = ("allow", "deny", "quarantine")
MAX_AUDIT = 1000


class AclEntry(msgspec.Struct, frozen=True, kw_only=True):
    did: str
    verdict: str  # allow, deny or quarantine
    reason: str
    created_at: int
    expires_at: int | None = None


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    at: int
    did: str
    event: str  # accepted, refused, ops-refused, held, approved, rejected, mode, ...
    detail: str


class Trust(msgspec.Struct, frozen=True, kw_only=True):
    """The network mode and every entry of the trust lists."""

    mode: str
    entries: list[AclEntry]


class Approval(msgspec.Struct, frozen=True, kw_only=True):
    """The held batches applied, and what applying them did."""

    approved: list[HeldBatch]
    received: Received


class Standing(msgspec.Struct, frozen=True):
    """How this node treats a DID now: whether it may sync, and whether what it sends
    is held in quarantine."""

    allowed: bool
    held: bool


def record(conn: apsw.Connection, did: str, event: str, detail: str) -> None:
    """An audit entry, inside the caller's transaction."""
    conn.execute(
        "INSERT INTO audit(at, did, event, detail) VALUES (?,?,?,?)",
        (now_ms(), did[:100], event, detail[:1000]),
    )


def verdict(conn: apsw.Connection, did: str) -> str | None:
    """`did`'s entry in the trust lists now (allow, deny, quarantine); None if it has
    none, or one that expired."""
    rows = conn.execute(
        "SELECT verdict FROM acl WHERE did = ? AND coalesce(expires_at, ?) >= ?",
        (did, now_ms(), now_ms()),
    ).fetchall()
    return str(rows[0][0]) if rows else None


def _mode(conn: apsw.Connection) -> str:
    found = conn.execute("SELECT value FROM meta WHERE name = 'network_mode'").fetchall()
    return str(found[0][0]) if found else "whitelist"


def standing_in(conn: apsw.Connection, did: str) -> Standing:
    """`did`'s standing as `conn` sees it (inside a write: as the write commits)."""
    current, said = _mode(conn), verdict(conn, did)
    peer = bool(conn.execute("SELECT 1 FROM peers WHERE did = ?", (did,)).fetchall())
    if current == "solitary" or said == "deny":
        return Standing(False, False)
    if said == "quarantine":
        return Standing(True, True)
    trusted = peer or said == "allow"
    held = not trusted and current == "quarantine"
    return Standing(trusted or current == "open" or held, held)


class Network:
    def __init__(self, db: Database, memory: MemoryService):
        self.db = db
        self.memory = memory

    def standing(self, did: str) -> Standing:
        """Whether `did` may sync with this node now, and whether it is held."""
        with self.db.read() as conn:
            return standing_in(conn, did)

    def allowed(self, did: str) -> bool:
        """Whether `did` may sync with this node now."""
        return self.standing(did).allowed

    def denied(self, did: str) -> bool:
        """Whether `did` is denied now (its ops are refused whoever passes them on)."""
        with self.db.read() as conn:
            return verdict(conn, did) == "deny"

    def mode(self) -> str:
        with self.db.read() as conn:
            return _mode(conn)

    def set_mode(self, mode: str) -> str:
        """Set the network mode; a session that the new mode refuses ends at once."""
        if mode not in MODES:
            raise InvalidInput(f"unknown network mode {mode!r}: use one of {', '.join(MODES)}")
        with self.db.write() as conn:
            conn.execute("UPDATE meta SET value = ? WHERE name = 'network_mode'", (mode,))
            record(conn, "-", "mode", mode)
        return mode

    def judge(
        self, did: str, verdict: str, reason: str = "", expires_at: int | None = None
    ) -> AclEntry:
        """Allow, deny or quarantine `did` (replacing an earlier verdict), until
        `expires_at` if given."""
        public_key(did)
        if verdict not in VERDICTS:
            raise InvalidInput(f"unknown verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
        entry = AclEntry(
            did=did, verdict=verdict, reason=reason, created_at=now_ms(), expires_at=expires_at
        )
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO acl VALUES (?,?,?,?,?)",
                (did, verdict, reason, expires_at, entry.created_at),
            )
            record(conn, did, verdict, reason or "-")
        return entry

    def trust(self) -> Trust:
        """The mode and every entry, expired ones too (they no longer count)."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT did, verdict, reason, created_at, expires_at FROM acl ORDER BY did"
            ).fetchall()
        entries = [
            AclEntry(did=r[0], verdict=r[1], reason=r[2], created_at=r[3], expires_at=r[4])  # type: ignore[arg-type]
            for r in rows
        ]
        return Trust(mode=self.mode(), entries=entries)

    def review(self) -> builtins.list[HeldBatch]:
        """What is held in quarantine, oldest first."""
        return self.memory.held()

    def approve(self, ids: Sequence[int] | None) -> Approval:
        """Apply held batches (None: all), in the order their chains need."""
        done, received = self.memory.approve(ids, self.denied)
        with self.db.write() as conn:
            for batch in done:
                record(conn, batch.sender, "approved", _told(batch))
            for origin, why in received.refused.items():
                record(conn, origin, "ops-refused", f"on approval: {why}")
        return Approval(approved=done, received=received)

    def reject(self, ids: Sequence[int] | None) -> builtins.list[HeldBatch]:
        """Drop held batches (None: all) and the later ones of their origins."""
        gone = self.memory.reject(ids)
        with self.db.write() as conn:
            for batch in gone:
                record(conn, batch.sender, "rejected", _told(batch))
        return gone

    def audit(self, did: str, event: str, detail: str) -> None:
        with self.db.write() as conn:
            record(conn, did, event, detail)

    def audit_log(self, limit: int = MAX_AUDIT) -> builtins.list[AuditEntry]:
        """The latest audit entries, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT at, did, event, detail FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return [AuditEntry(at=r[0], did=r[1], event=r[2], detail=r[3]) for r in reversed(rows)]


def chosen(ids: Sequence[int] | None, every: bool) -> Sequence[int] | None:
    """The batches a caller named: `ids`, or None for all; one of them must be given."""
    if every == bool(ids):
        raise InvalidInput("give batch ids or all (one of them, not both)")
    return None if every else ids


def _told(batch: HeldBatch) -> str:
    return f"batch {batch.id}: ops {batch.first_seq}-{batch.last_seq} of {batch.origin}"
