"""API tokens: random secrets shown once; only their SHA-256 is stored.

A token is 32 random bytes, so a plain hash is as strong as a slow one here (nothing to
guess), and a lookup by hash takes no secret-dependent time.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import apsw

from ..clock import now_ms
from ..errors import CISError, Conflict, InvalidInput, NotFound
from ..memory import validate as check
from ..model import Token
from ..store.sqlite import Database

log = logging.getLogger("cis.tokens")
PREFIX = "cis_"
TOUCH_EVERY_MS = 60_000  # last_used_at is refreshed at most this often per token
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class TokenService:
    def __init__(self, db: Database):
        self.db = db
        self._touched: dict[str, int] = {}
        self._lock = threading.Lock()
        # last_used_at is written off the request's path: a request never waits for
        # the write lock (another process may hold it for a long import)
        self._toucher = ThreadPoolExecutor(1, thread_name_prefix="cis-token-touch")

    def close(self) -> None:
        """Finish the last-use writes under way."""
        self._toucher.shutdown(wait=True, cancel_futures=True)

    def create(
        self, name: str, *, scope: str | None = None, read_only: bool = False
    ) -> tuple[Token, str]:
        """A new token and its secret; the secret is not stored and cannot be shown again."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(
                "token name must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit"
            )
        token = Token(
            name=name,
            scope=None if scope is None else check.scope(scope),
            read_only=bool(read_only),
            created_at=now_ms(),
        )
        secret = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        try:
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO tokens VALUES (?,?,?,?,?,NULL)",
                    (name, _hash(secret), token.scope, int(token.read_only), token.created_at),
                )
        except apsw.ConstraintError as exc:
            raise Conflict(f"a token named {name!r} exists; revoke it first") from exc
        return token, secret

    def list(self) -> list[Token]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT name, scope, read_only, created_at, last_used_at FROM tokens ORDER BY name"
            ).fetchall()
        return [
            Token(name=n, scope=s, read_only=bool(r), created_at=c, last_used_at=u)  # type: ignore[arg-type]
            for n, s, r, c, u in rows
        ]

    def revoke(self, name: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM tokens WHERE name = ?", (name,))
            if not conn.changes():
                raise NotFound(f"no token named {name!r}")

    def verify(self, secret: str) -> Token | None:
        """The token this secret belongs to, or None (wrong, revoked or malformed)."""
        if not isinstance(secret, str) or not secret.startswith(PREFIX) or len(secret) > 128:
            return None
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT name, scope, read_only, created_at, last_used_at FROM tokens"
                " WHERE hash = ?",
                (_hash(secret),),
            ).fetchall()
        if not rows:
            return None
        name, scope, read_only, created, used = rows[0]
        now = now_ms()
        with self._lock:
            due = now - self._touched.get(str(name), 0) >= TOUCH_EVERY_MS
            if due:
                self._touched[str(name)] = now
        if due:
            self._toucher.submit(self._touch, str(name), now)
            used = now
        return Token(
            name=str(name),
            scope=None if scope is None else str(scope),
            read_only=bool(read_only),
            created_at=int(created),  # type: ignore[arg-type]
            last_used_at=None if used is None else int(used),
        )

    def _touch(self, name: str, now: int) -> None:
        try:
            with self.db.write() as conn:
                conn.execute("UPDATE tokens SET last_used_at = ? WHERE name = ?", (now, name))
        except CISError as exc:  # a lost last-use time is not worth failing anything for
            log.info("last use of token %r not recorded: %s", name, exc)
