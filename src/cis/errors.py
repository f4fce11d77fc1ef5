"""The CIS error tree: one root, each class with a stable CLI exit code and HTTP status."""

from __future__ import annotations

from collections.abc import Mapping

SHELLS = ("python", "cli", "http", "mcp")


class CISError(Exception):
    """Root of every error CIS raises on purpose.

    `hints` say what to do in each shell's own words ("python", "cli", "http", "mcp"):
    `str()` carries the Python one, `told(shell)` another shell's.
    """

    exit_code = 1
    http_status = 500
    code = "internal"

    def __init__(self, message: str = "", *, hints: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.hints = dict(hints or {})

    def told(self, shell: str) -> str:
        hint = self.hints.get(shell)
        return f"{self.message}; {hint}" if hint else self.message

    def __str__(self) -> str:
        return self.told("python")


class InvalidInput(CISError):
    """A value given to CIS is malformed, out of range or unknown."""

    exit_code = 2
    http_status = 400
    code = "invalid_input"


class NotFound(CISError):
    """No memory (or other object) matches the id or key."""

    exit_code = 3
    http_status = 404
    code = "not_found"


class Conflict(CISError):
    """The write clashes with what is stored (e.g. a key already in use)."""

    exit_code = 4
    http_status = 409
    code = "conflict"


class KeyMismatch(CISError):
    """The encryption key or passphrase does not open this database."""

    exit_code = 5
    http_status = 403
    code = "wrong_key"


class StorageError(CISError):
    """The database cannot be read or written (disk full, read-only, corrupt)."""

    exit_code = 6
    http_status = 507
    code = "storage"


class Busy(CISError):
    """Another process held the database lock for longer than the busy timeout."""

    exit_code = 7
    http_status = 503
    code = "busy"


class EmbeddingError(CISError):
    """The embedding model could not be loaded or run."""

    exit_code = 8
    http_status = 503
    code = "embedding"


class NotInitialized(CISError):
    """The data directory holds no node yet."""

    exit_code = 9
    http_status = 503
    code = "not_initialized"


class Unauthorized(CISError):
    """The request carries no valid API token."""

    exit_code = 10
    http_status = 401
    code = "unauthorized"


class Forbidden(CISError):
    """The caller's token does not allow this (another scope, or a write when read-only)."""

    exit_code = 11
    http_status = 403
    code = "forbidden"


class TooLarge(InvalidInput):
    """A request body is over its size limit."""

    http_status = 413
    code = "too_large"


class SkillError(CISError):
    """A skill's run ended badly: a trap, a time-out, a memory limit, a forbidden call."""

    exit_code = 12
    http_status = 422
    code = "skill_failed"


class NetworkError(CISError):
    """A network address cannot be used: a port in use, an address not of this machine."""

    exit_code = 13
    http_status = 502
    code = "network"


class SyncRefused(CISError):
    """Ops from a peer were refused: a bad signature, a gap or fork in a chain, a clock
    too far ahead, content that may not travel, or a peer that is not allowed."""

    exit_code = 14
    http_status = 422
    code = "sync_refused"
