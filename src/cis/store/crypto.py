"""At-rest encryption keys: a 0600 key file, or a passphrase stretched with Argon2id.

Beside the key material sits `db.check`, a keyed hash of the database key (nothing can be
learnt of the key from it). It tells a wrong key from a damaged database: both look the
same to the cipher, which refuses the file's first page either way.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from ..errors import InvalidInput, KeyMismatch, NotInitialized

KEY_FILE = "db.key"
SALT_FILE = "db.salt"
CHECK_FILE = "db.check"
KEY_BYTES = 32


def write_private(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all, readable by its owner only: a temporary file
    beside it, synced, then renamed over it (a full disk leaves no half-written file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def resolve_key(
    data_dir: Path, *, passphrase: str | None, create: bool, created: list[Path] | None = None
) -> bytes:
    """The database key of the node in `data_dir`, creating key material if `create`
    (each file it creates is appended to `created`)."""
    key_path, salt_path = data_dir / KEY_FILE, data_dir / SALT_FILE
    made = created if created is not None else []
    if passphrase is not None:
        if key_path.exists():
            raise KeyMismatch(
                f"this node is keyed by {key_path}, not a passphrase; unset CIS_PASSPHRASE"
            )
        if not salt_path.exists():
            if not create:
                raise NotInitialized(f"no node in {data_dir}; run `cis init`")
            write_private(salt_path, secrets.token_bytes(16))
            made.append(salt_path)
        return derive_key(passphrase, salt_path.read_bytes())
    if salt_path.exists():
        raise KeyMismatch("this node is locked by a passphrase; set CIS_PASSPHRASE")
    if key_path.exists():
        return _read_key_file(key_path)
    if not create:
        raise NotInitialized(f"no node in {data_dir}; run `cis init`")
    key = secrets.token_bytes(KEY_BYTES)
    write_private(key_path, key.hex().encode("ascii") + b"\n")
    made.append(key_path)
    return key


def key_check(key: bytes) -> bytes:
    return hmac.new(key, b"cis database key check v1", hashlib.sha256).hexdigest().encode()


def write_key_check(data_dir: Path, key: bytes) -> None:
    write_private(data_dir / CHECK_FILE, key_check(key) + b"\n")


def key_matches(data_dir: Path, key: bytes) -> bool | None:
    """Whether `key` is the one the node was made with; None when that is not on record."""
    try:
        stored = (data_dir / CHECK_FILE).read_bytes().strip()
    except OSError:
        return None
    return hmac.compare_digest(stored, key_check(key))
