"""Checks on every value that enters the memory service; each failure says what to do."""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from ..clock import now_ms
from ..errors import InvalidInput
from ..model import CATEGORIES, DOMAINS, SCOPE_KINDS

MAX_KEY_CHARS = 256
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_METADATA_BYTES = 65_536
MAX_METADATA_DEPTH = 64
MAX_LIMIT = 1000
_SCOPE = re.compile(
    r"(?:global|(?:" + "|".join(SCOPE_KINDS) + r")/[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_uuid(value: object) -> bool:
    """Whether `value` is a UUID in lowercase text form."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def _uuid(value: int, version: int) -> str:
    value = (value & ~(0xF << 76)) | (version << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_last_id = [0, 0]  # the millisecond and counter of the last id this process made
_id_lock = threading.Lock()
# random bytes drawn 4 KiB at a time: one os.urandom per id drops and retakes the
# interpreter lock so often that a bulk add kept other threads waiting (measured)
_entropy = bytearray()
os.register_at_fork(after_in_child=_entropy.clear)  # a child never repeats its parent's


def new_id() -> str:
    """A UUIDv7: 48-bit millisecond time, a 12-bit counter, then random bits. Ids made
    one after another sort in that order (the counter orders one millisecond's), so the
    order of memories by time and id, which every replica shares, keeps the order in
    which they were written."""
    with _id_lock:
        ms, counter = now_ms(), 0
        if ms <= _last_id[0]:
            ms, counter = _last_id[0], _last_id[1] + 1
            if counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                ms, counter = ms + 1, 0
        _last_id[:] = [ms, counter]
        if not _entropy:
            _entropy[:] = os.urandom(4096)
        rand = int.from_bytes(_entropy[-8:], "big")
        del _entropy[-8:]
    return _uuid((ms << 80) | (counter << 64) | rand, 7)


def keyed_id(scope: str, key: str) -> str:
    """The id of the memory with `key` in `scope`, the same on every node (a UUIDv8 of
    their hash), so that one key names one memory across the cluster."""
    digest = hashlib.sha256(f"cis-key\x00{scope}\x00{key}".encode()).digest()
    return _uuid(int.from_bytes(digest[:16], "big"), 8)


def _utf8(value: str, what: str) -> bytes:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid UTF-8 (bad character at {exc.start})") from exc
    if b"\x00" in data:
        raise InvalidInput(f"{what} holds a NUL character (at {value.index(chr(0))}); remove it")
    return data


def plain_text(value: object, what: str) -> str:
    """A string of valid UTF-8 without NUL characters."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    _utf8(value, what)
    return value


def text(value: object, max_bytes: int, what: str = "text") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    size = len(_utf8(value, what))
    if not value.strip():
        raise InvalidInput(f"{what} is empty; a memory needs some text")
    if size > max_bytes:
        raise InvalidInput(f"{what} is {size} bytes; the limit is {max_bytes} (CIS_MAX_TEXT_BYTES)")
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


def key(value: object, what: str = "key") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_CHARS:
        raise InvalidInput(f"{what} must be 1-{MAX_KEY_CHARS} characters")
    _utf8(value, what)
    if _CONTROL.search(value) or value != value.strip():
        raise InvalidInput(f"{what} must not hold control characters or surrounding spaces")
    return value


def thread(value: object) -> str | None:
    """A thread's name: what a key may be (the memories that explain each other share it)."""
    return key(value, "thread")


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


def _check_json(root: Any) -> None:
    """Every value of a metadata object is JSON, at most MAX_METADATA_DEPTH deep (checked
    without recursion, so no depth overflows the stack)."""
    stack: list[tuple[Any, str, int]] = [(root, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = f"metadata{path}"
        if depth > MAX_METADATA_DEPTH:
            raise InvalidInput(f"{where}: nested deeper than {MAX_METADATA_DEPTH} levels")
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            _utf8(value, where)
        elif isinstance(value, int):
            if not -(2**63) <= value < 2**64:
                raise InvalidInput(f"{where}: integer out of the 64-bit range")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInput(f"{where}: NaN and infinity are not JSON")
        elif isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise InvalidInput(f"{where}: object keys must be strings")
                _utf8(k, f"{where} key {k[:40]!r}")
                stack.append((v, f"{path}.{k}", depth + 1))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        else:
            raise InvalidInput(f"{where}: {type(value).__name__} is not a JSON value")


def metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object")
    _check_json(value)
    if len(msgspec.json.encode(value)) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return value


MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_AGO = re.compile(r"(\d{1,9})\s*(s|m|h|d|w)")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
TIME_FORMS = (
    "an ISO-8601 time with its zone, a date (2026-12-01, UTC), a time ago (90m, 7d) or epoch ms"
)


def when(value: object, what: str) -> int | None:
    """Epoch milliseconds of a time: an aware datetime, epoch ms (an int, or digits), an
    ISO-8601 time with its zone, a plain date (midnight UTC), or a time ago (`90m`,
    `1h`, `7d`, `2w`; s, m, h, d, w)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_time(value.strip(), what)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(f"{what} needs a time zone (e.g. 2024-05-08T13:56:00+00:00)")
        value = int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be {TIME_FORMS}")
    if not MIN_MS <= value <= MAX_MS:
        raise InvalidInput(f"{what} {value} is outside the years 1 to 9999 (epoch ms)")
    return value


def _parse_time(raw: str, what: str) -> int | datetime:
    if raw.lstrip("-").isdigit():
        return int(raw) if len(raw) < 20 else MAX_MS + 1
    ago = _AGO.fullmatch(raw)
    if ago:
        return now_ms() - int(ago.group(1)) * _UNIT_MS[ago.group(2)]
    _utf8(raw, what)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"{what} {raw!r} is not a time: use {TIME_FORMS}") from exc
    if _DATE.fullmatch(raw):
        return parsed.replace(tzinfo=UTC)
    return parsed


def ahead(value: object, what: str) -> int | None:
    """Epoch milliseconds of a time to come: a span from now (`30d`, `12h`; s, m, h, d,
    w), or any form `when` takes."""
    if isinstance(value, str):
        found = _AGO.fullmatch(value.strip())
        if found:
            return now_ms() + int(found.group(1)) * _UNIT_MS[found.group(2)]
    try:
        return when(value, what)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{what} {value!r} is not a time to come: use a span from now (30d, 12h) or an"
            " ISO-8601 time with its zone"
        ) from exc


def limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return value
