"""A node's data directory: made whole or not at all, and checked before it is opened.

A new node is made under a lock on its directory (two processes that start at once make
one node), its database first under a temporary name and renamed into place once its
schema is in; on any failure (a full disk, a kill) what was made is removed again, so a
later `cis init` starts clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..config import Config
from ..errors import KeyMismatch, NotInitialized, StorageError
from .crypto import CHECK_FILE, KEY_FILE, SALT_FILE, key_matches, resolve_key, write_key_check
from .sqlite import Database

DB_FILE = "cis.db"
_SIDE_FILES = ("-wal", "-shm", "-journal")


def storage_error(path: Path, exc: OSError, doing: str) -> StorageError:
    what = exc.strerror or type(exc).__name__
    return StorageError(f"cannot {doing} {path}: {what}")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _make_directory(data_dir: Path) -> list[Path]:
    """Create the data dir (owner-only, with any missing parents); the folders made
    now, deepest first."""
    if data_dir.is_dir():
        return []
    if data_dir.exists() or any(p.exists() and not p.is_dir() for p in data_dir.parents):
        raise StorageError(f"{data_dir} cannot be a node's directory: a file stands in its path")
    missing = [data_dir, *(p for p in data_dir.parents if not p.exists())]
    try:
        data_dir.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return []  # made by another process just now
    except OSError as exc:
        _remove_empty(missing)
        raise storage_error(data_dir, exc, "create") from exc
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def create(data_dir: Path, passphrase: str | None, config: Config) -> None:
    """Make a node in `data_dir` unless one is there; nothing is left of a failed try."""
    made = _make_directory(data_dir)
    try:
        with _locked(data_dir):
            _make_files(data_dir, passphrase, config)
    except BaseException as exc:
        if made:
            with contextlib.suppress(OSError):
                _remove_tree(data_dir)
            _remove_empty(made[1:])
        if isinstance(exc, OSError):
            raise storage_error(data_dir / DB_FILE, exc, "create") from exc
        raise


def _make_files(data_dir: Path, passphrase: str | None, config: Config) -> None:
    """Under the directory's lock: the key material and the database, or nothing."""
    db_path = data_dir / DB_FILE
    if db_path.exists():
        return  # made by another process meanwhile
    key_path = data_dir / KEY_FILE
    if key_path.exists() and key_path.stat().st_size == 0:
        key_path.unlink()  # an empty key of an earlier failed init: nothing can use it
    created: list[Path] = []
    fresh = data_dir / f"{DB_FILE}.new"
    try:
        key = resolve_key(data_dir, passphrase=passphrase, create=True, created=created)
        _remove(fresh)
        os.close(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        Database(fresh, key, config).close()  # makes the schema
        write_key_check(data_dir, key)
        created.append(data_dir / CHECK_FILE)
        os.replace(fresh, db_path)
    except BaseException:
        _remove(fresh)
        for path in created:
            path.unlink(missing_ok=True)
        raise


def _remove(db: Path) -> None:
    for suffix in ("", *_SIDE_FILES):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _remove_tree(directory: Path) -> None:
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()


def check_existing(data_dir: Path) -> None:
    """Refuse a data dir whose database cannot be this node's: empty, or keyless."""
    db_path = data_dir / DB_FILE
    try:
        size = db_path.stat().st_size
    except FileNotFoundError as exc:
        raise NotInitialized(f"no node in {data_dir}; run `cis init`") from exc
    except OSError as exc:
        raise storage_error(db_path, exc, "read") from exc
    if size == 0:
        raise StorageError(
            f"{db_path} is empty (0 bytes), not a CIS database: restore it from a backup, "
            "or move it and its key file away to make a new node"
        )
    if not (data_dir / KEY_FILE).exists() and not (data_dir / SALT_FILE).exists():
        raise KeyMismatch(
            f"{db_path} exists but its key file {data_dir / KEY_FILE} is missing; restore it"
        )


def refused(data_dir: Path, key: bytes, exc: KeyMismatch) -> Exception:
    """What a database the cipher refused means: a wrong key, or a damaged file."""
    db_path = data_dir / DB_FILE
    matches = key_matches(data_dir, key)
    if matches:
        return StorageError(
            f"{db_path} is damaged: the right key does not open its first page; restore it "
            "from a backup"
        )
    if matches is None:
        return KeyMismatch(
            f"{db_path} cannot be opened with this key: a wrong key file or passphrase, or "
            "a damaged file"
        )
    return exc


def record_key(data_dir: Path, key: bytes) -> None:
    """Keep the key check of a node made before there was one (best effort)."""
    if key_matches(data_dir, key) is None:
        with contextlib.suppress(OSError):
            write_key_check(data_dir, key)
