"""At-rest encryption keys: a 0600 key file, or a passphrase stretched with Argon2id."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from ..errors import InvalidInput, KeyMismatch, NotInitialized

KEY_FILE = "db.key"
SALT_FILE = "db.salt"
KEY_BYTES = 32


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only; fails if it already exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def derive_key(passphrase: str, salt: bytes) -> bytes:
    """Argon2id (3 passes, 64 MiB, 4 lanes) of the passphrase."""
    if not passphrase:
        raise InvalidInput("CIS_PASSPHRASE is set but empty; set a passphrase or unset it")
    kdf = Argon2id(salt=salt, length=KEY_BYTES, iterations=3, lanes=4, memory_cost=64 * 1024)
    return kdf.derive(passphrase.encode("utf-8"))


def _read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyMismatch(
            f"{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
        )
    text = path.read_text("ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyMismatch(f"{path} is not a CIS key file (expected {KEY_BYTES * 2} hex digits)")
    return key


def resolve_key(data_dir: Path, *, passphrase: str | None, create: bool) -> bytes:
    """The database key of the node in `data_dir`, creating key material if `create`."""
    key_path, salt_path = data_dir / KEY_FILE, data_dir / SALT_FILE
    if passphrase is not None:
        if key_path.exists():
            raise KeyMismatch(
                f"this node is keyed by {key_path}, not a passphrase; unset CIS_PASSPHRASE"
            )
        if not salt_path.exists():
            if not create:
                raise NotInitialized(f"no node in {data_dir}; run `cis init`")
            _write_private(salt_path, secrets.token_bytes(16))
        return derive_key(passphrase, salt_path.read_bytes())
    if salt_path.exists():
        raise KeyMismatch("this node is locked by a passphrase; set CIS_PASSPHRASE")
    if key_path.exists():
        return _read_key_file(key_path)
    if not create:
        raise NotInitialized(f"no node in {data_dir}; run `cis init`")
    key = secrets.token_bytes(KEY_BYTES)
    _write_private(key_path, key.hex().encode("ascii") + b"\n")
    return key
