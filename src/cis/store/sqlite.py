"""The encrypted SQLite database: one writer, a pool of readers, tuned WAL, clear errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import apsw

from ..config import Config
from ..errors import Busy, CISError, KeyMismatch, StorageError
from .schema import SCHEMA_VERSION, migrate

KDF_ITER = 1
# the writer copies the WAL back itself once it holds this many times the checkpoint
# threshold (the checkpointer thread fell behind, or cannot run)
BEHIND = 16

log = logging.getLogger(__name__)
T = TypeVar("T")


def marks(values: Sequence[T]) -> tuple[str, list[T]]:
    """The `?` marks of an IN list of `values`, and the values to bind: padded to the next
    power of two with the last value (IN is a set, so the rows are the same), so that a
    statement of IN lists of every length is prepared once per size class and stays in
    the statement cache (preparing them took 4% of a search at 10k). Every IN list of
    values goes through here."""
    padded = list(values)
    if padded:
        padded += padded[-1:] * ((1 << (len(padded) - 1).bit_length()) - len(padded))
    return ",".join("?" * len(padded)), padded


def scalar(conn: apsw.Connection, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
    """The first column of the first row, or None."""
    rows = conn.execute(sql, params).fetchall()
    return rows[0][0] if rows else None


@contextmanager
def translate_errors(path: Path) -> Iterator[None]:
    """Turn SQLite failures into CIS errors that say what to do."""
    try:
        yield
    except CISError:
        raise
    except apsw.FullError as exc:
        raise StorageError(f"disk full writing {path}; free space and retry ({exc})") from exc
    except (apsw.ReadOnlyError, apsw.PermissionsError, apsw.AuthError) as exc:
        raise StorageError(f"{path} cannot be written ({exc}); check permissions") from exc
    except (apsw.BusyError, apsw.LockedError) as exc:
        raise Busy(f"{path} stayed locked by another process ({exc}); retry") from exc
    except apsw.NotADBError as exc:
        raise KeyMismatch(
            f"{path} cannot be opened with this key (wrong key file or passphrase)"
        ) from exc
    except (apsw.CorruptError, apsw.IOError, apsw.CantOpenError) as exc:
        raise StorageError(f"{path}: {exc}") from exc


def _checkpoint(conn: apsw.Connection) -> bool:
    """A PASSIVE checkpoint on `conn`; whether it ran (busy: another process copies;
    a full disk: the copy is left for later, the WAL keeps every commit)."""
    try:
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
    except apsw.Error as exc:
        log.info("WAL checkpoint left for later: %s", exc)
        return False
    return True


class Checkpointer:
    """Copies the WAL back into the database on a thread of its own, so that no COMMIT
    waits for it: the writer's WAL hook only wakes it. A bulk import of 100k ran at
    22,500-23,000/s so, against 19,400-19,500/s with SQLite's checkpoint in the COMMIT
    that crossed the threshold; the WAL stayed at 18-35 MB."""

    def __init__(self, connect: Callable[[], apsw.Connection], threshold: int):
        self._connect = connect
        self.threshold = threshold
        self.behind = False  # the WAL grew past BEHIND thresholds: the writer steps in
        self.copies = 0  # checkpoints this thread ran
        self._seen = 0  # the WAL's pages when the thread was last woken (0: it started over)
        self._due = threading.Event()
        self._lock = threading.Lock()
        self._closing = False
        self._thread: threading.Thread | None = None

    def wal_grew(self, _conn: apsw.Connection, _name: str, pages: int) -> int:
        """The writer's WAL hook: after each commit, the pages the WAL holds. The thread
        wakes once `threshold` pages came since its last checkpoint: woken after every
        commit, it copied while the next one wrote, so the WAL could never start over
        (and every add waited on its syncs: p50 0.30 -> 0.44 ms)."""
        with self._lock:
            if pages <= self._seen:  # a commit adds pages: fewer, the WAL started over
                self._seen = 0
            if pages - self._seen < self.threshold or self._closing:
                return apsw.SQLITE_OK
            self._seen = pages
            self.behind = pages >= BEHIND * self.threshold
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cis-checkpoint", daemon=True
                )
                self._thread.start()
        self._due.set()
        return apsw.SQLITE_OK

    def _run(self) -> None:
        conn: apsw.Connection | None = None
        while True:
            self._due.wait()
            self._due.clear()
            if self._closing:
                return
            try:
                conn = conn or self._connect()
            except (apsw.Error, CISError) as exc:
                log.info("WAL checkpoint left for later: %s", exc)
                continue
            if _checkpoint(conn):
                self.copies += 1

    def catch_up(self, writer: apsw.Connection) -> None:
        """On the writer, after its COMMIT: copy the WAL back now (it is committed; a
        failure here only leaves the copy for later)."""
        self.behind = False
        _checkpoint(writer)

    def close(self) -> None:
        """Stop the thread (after the checkpoint under way); its connection closes with
        the database's."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._due.set()
        if thread is not None:
            thread.join()


class Database:
    """An encrypted SQLite file; thread-safe; several processes may open the same file."""

    def __init__(self, path: Path, key: bytes, config: Config, *, read_only: bool = False):
        self.path = path
        self._key_hex = key.hex()
        self._config = config
        self._read_only = read_only
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[apsw.Connection] = []
        self._slots = threading.BoundedSemaphore(max(1, config.readers))
        self._all: list[apsw.Connection] = []
        self._watch_lock = threading.Lock()
        self._commits = 0  # of the writer connection
        self._checkpoints = Checkpointer(
            lambda: self._connect(writer=False), config.wal_autocheckpoint_pages
        )
        try:
            with translate_errors(path):
                self._writer = self._connect(writer=True)
                self._watch = self._connect(writer=False)
                current = scalar(self._writer, "PRAGMA user_version") == SCHEMA_VERSION
            if not read_only and not current:  # the write lock only when there is work
                with self.write() as conn:
                    migrate(conn)
        except BaseException:
            self.close()
            raise

    def _connect(self, *, writer: bool) -> apsw.Connection:
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        if self._read_only:
            flags = apsw.SQLITE_OPEN_READONLY
        conn = apsw.Connection(str(self.path), flags=flags)
        try:
            self._configure(conn, writer=writer)
        except BaseException:
            conn.close()
            raise
        with self._pool_lock:
            self._all.append(conn)
        return conn

    def _configure(self, conn: apsw.Connection, *, writer: bool) -> None:
        # The key is already full-entropy (random, or stretched by Argon2id), so the
        # cipher's own per-connection PBKDF2 adds only latency; this value is part of
        # the file format: changing it makes every existing database unreadable.
        conn.execute(f"PRAGMA kdf_iter={KDF_ITER}")
        conn.execute(f"PRAGMA hexkey='{self._key_hex}'")
        conn.set_busy_timeout(self._config.busy_timeout_ms)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # checks the key
        cfg = self._config
        if writer and not self._read_only:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.set_wal_hook(self._checkpoints.wal_grew)  # in place of the autocheckpoint
            conn.execute(f"PRAGMA journal_size_limit={cfg.journal_size_limit_mb * 1024 * 1024}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA cache_size=-{cfg.sqlite_cache_mb * 1024}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA foreign_keys=ON")
        if not writer:
            conn.execute("PRAGMA query_only=1")

    @contextmanager
    def write(self) -> Iterator[apsw.Connection]:
        """One IMMEDIATE transaction on the writer connection; rolled back on any error."""
        if self._read_only:
            raise StorageError(f"{self.path} is open read-only")
        with self._write_lock, translate_errors(self.path):
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
                self._commits += 1
                if self._checkpoints.behind:
                    self._checkpoints.catch_up(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[apsw.Connection]:
        """A reader connection from the pool, inside one snapshot (deferred transaction).

        The connection goes back to the pool however the block ends; one that cannot
        end its transaction cleanly is closed instead."""
        self._slots.acquire()
        conn: apsw.Connection | None = None
        try:
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
            with translate_errors(self.path):
                if conn is None:
                    conn = self._connect(writer=False)
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
        except BaseException:
            if conn is not None and conn.in_transaction:
                self._discard(conn)
                conn = None
            raise
        finally:
            if conn is not None:
                with self._pool_lock:
                    if conn in self._all:  # not closed by close() meanwhile
                        self._idle.append(conn)
            self._slots.release()

    def _discard(self, conn: apsw.Connection) -> None:
        with self._pool_lock:
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def stamp(self, conn: apsw.Connection) -> tuple[int, int]:
        """Inside a write transaction: how many transactions the writer connection has
        committed, and SQLite's data_version (which moves when another connection
        commits). The next transaction sees (first + 1, second) if only this one commits
        in between."""
        return self._commits, int(scalar(conn, "PRAGMA data_version"))

    def data_version(self) -> int:
        """Changes whenever any connection (this process or another) commits."""
        with self._watch_lock, translate_errors(self.path):
            return int(scalar(self._watch, "PRAGMA data_version"))

    def pragma(self, name: str) -> object:
        with self.read() as conn:
            return scalar(conn, f"PRAGMA {name}")

    def close(self) -> None:
        self._checkpoints.close()
        with self._write_lock, self._pool_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
            self._idle.clear()
