"""What a skill run gives back, whatever ran it; and how its failures read."""

from __future__ import annotations

from typing import Any

import msgspec

MAX_OUTPUT = 16 * 1024 * 1024
MAX_LOG = 64 * 1024


class Call(msgspec.Struct, kw_only=True):
    output: Any
    log: str
    millis: float


def failure(what: str, log: str) -> str:
    """A skill's failure, with the end of its log."""
    tail = log.strip()[-500:]
    return f"skill {what}" + (f"; its log ends: {tail}" if tail else "")
