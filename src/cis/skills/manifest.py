"""A skill's manifest, `skill.toml`: what it is, what it may touch (deny by default), and
its limits.

```toml
[skill]
name = "wordcount"
version = "0.1.0"
type = "wasm"                 # wasm | command | python | dag | remote
entry = "wordcount.wasm"
description = "Counts the words of a text"
[permissions]
memory_read = false
memory_write = false
filesystem = []               # host paths, mapped read-only ("rw:" in front: writable)
[limits]
memory_mb = 64
timeout_ms = 5000
fuel = 0                      # 0: no fuel limit
```
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from ..errors import InvalidInput

NATIVE = ("command", "python")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_MEMORY_MB = 4096
MAX_TIMEOUT_MS = 3_600_000


class Permissions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    memory_read: bool = False
    memory_write: bool = False
    network: tuple[str, ...] = ()
    filesystem: tuple[str, ...] = ()


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    memory_mb: int = 64
    timeout_ms: int = 5000
    fuel: int = 0


class SkillInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    version: str = "0.1.0"
    type: Literal["wasm", "python", "command", "remote", "dag"] = "wasm"
    entry: str
    description: str = ""
    token_env: str | None = None  # remote: the variable that holds the other node's token


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    skill: SkillInfo
    permissions: Permissions = Permissions()
    limits: Limits = Limits()


def load(directory: Path) -> Manifest:
    """The manifest of the skill in `directory`, checked; InvalidInput says what is wrong."""
    path = directory / "skill.toml"
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInput(f"{directory} holds no skill.toml") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not valid TOML ({exc})") from exc
    try:
        manifest = msgspec.convert(raw, Manifest)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"{path}: {exc}") from exc
    info, limits = manifest.skill, manifest.limits
    if not _NAME.fullmatch(info.name):
        raise InvalidInput(f"{path}: name {info.name!r}: 1-64 of a-z, 0-9, '_', '-'")
    if not 1 <= limits.memory_mb <= MAX_MEMORY_MB:
        raise InvalidInput(f"{path}: limits.memory_mb must be 1-{MAX_MEMORY_MB}")
    if not 1 <= limits.timeout_ms <= MAX_TIMEOUT_MS:
        raise InvalidInput(f"{path}: limits.timeout_ms must be 1-{MAX_TIMEOUT_MS}")
    if limits.fuel < 0:
        raise InvalidInput(f"{path}: limits.fuel must be 0 (none) or more")
    if manifest.permissions.network:
        raise InvalidInput(f"{path}: network permissions cannot be granted yet (no sockets)")
    if info.type == "remote" and not re.fullmatch(r"https?://[^\s/]+/\S*", info.entry):
        raise InvalidInput(f"{path}: a remote skill's entry is the URL of its run endpoint")
    if info.type in ("wasm", "dag"):
        entry = (directory / info.entry).resolve()
        if directory.resolve() not in entry.parents or not entry.is_file():
            raise InvalidInput(f"{path}: entry {info.entry!r} is not a file inside the skill")
    return manifest
