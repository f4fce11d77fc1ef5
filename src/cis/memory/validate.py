"""Checks on every value that enters the memory service; each failure says what to do."""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from ..errors import InvalidInput
from ..model import CATEGORIES, DOMAINS, SCOPE_KINDS

MAX_KEY_CHARS = 256
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_METADATA_BYTES = 65_536
MAX_LIMIT = 1000
_SCOPE = re.compile(
    r"(?:global|(?:" + "|".join(SCOPE_KINDS) + r")/[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A UUIDv7: 48-bit millisecond time, then random bits; sorts by creation time."""
    value = (now_ms() << 80) | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid UTF-8 (bad character at {exc.start})") from exc


def text(value: object, max_bytes: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"text must be a string, not {type(value).__name__}")
    size = len(_utf8(value, "text"))
    if not value.strip():
        raise InvalidInput("text is empty; a memory needs some text")
    if size > max_bytes:
        raise InvalidInput(f"text is {size} bytes; the limit is {max_bytes} (CIS_MAX_TEXT_BYTES)")
    return value


def content_hash(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()[:16]


def scope(value: object) -> str:
    if not isinstance(value, str) or not _SCOPE.fullmatch(value):
        raise InvalidInput(
            f"unknown scope {value!r}: use 'global' or project/<name>, agent/<name>, "
            "session/<id> (name: letters, digits, . _ : @ -)"
        )
    return value


def domain(value: object) -> str:
    if value not in DOMAINS:
        raise InvalidInput(f"unknown domain {value!r}: use one of {', '.join(DOMAINS)}")
    return str(value)


def category(value: object) -> str:
    if value not in CATEGORIES:
        raise InvalidInput(f"unknown category {value!r}: use one of {', '.join(CATEGORIES)}")
    return str(value)


def key(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_CHARS:
        raise InvalidInput(f"key must be 1-{MAX_KEY_CHARS} characters")
    _utf8(value, "key")
    if _CONTROL.search(value) or value != value.strip():
        raise InvalidInput("key must not hold control characters or surrounding spaces")
    return value


def tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput("tags must be a list of strings")
    out: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG_CHARS:
            raise InvalidInput(f"each tag must be a string of 1-{MAX_TAG_CHARS} characters")
        _utf8(tag, "tag")
        if _CONTROL.search(tag) or any(c.isspace() or c == "," for c in tag):
            raise InvalidInput(f"tag {tag!r} must not hold spaces, commas or control characters")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"{len(out)} tags; the limit is {MAX_TAGS}")
    return tuple(out)


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str):
            _utf8(value, f"metadata{path}")
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise InvalidInput(f"metadata{path}: integer out of the 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"metadata{path}: NaN and infinity are not JSON")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"metadata{path}: object keys must be strings")
            _check_json(v, f"{path}.{k}")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]")
        return
    raise InvalidInput(f"metadata{path}: {type(value).__name__} is not a JSON value")


def metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object")
    _check_json(value, "")
    if len(msgspec.json.encode(value)) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return value


def when(value: object, what: str) -> int | None:
    """Epoch milliseconds from an aware datetime, an ISO-8601 string or an int of ms."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a datetime, ISO-8601 string or epoch milliseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInput(f"{what} {value!r} is not an ISO-8601 date/time") from exc
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(f"{what} needs a time zone (e.g. 2024-05-08T13:56:00+00:00)")
        return int(value.timestamp() * 1000)
    raise InvalidInput(f"{what} must be a datetime, ISO-8601 string or epoch milliseconds")


def time_arg(raw: str | None) -> str | int | None:
    """A time as a shell takes it in (a CLI option, a query parameter): digits are epoch
    milliseconds, anything else stays text for `when` to read as ISO-8601."""
    return int(raw) if raw is not None and raw.lstrip("-").isdigit() else raw


def limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return value
