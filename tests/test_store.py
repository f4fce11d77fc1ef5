"""The encrypted store: nothing readable on disk, wrong keys refused, clear storage errors."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import apsw
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cis import KeyMismatch, Node, NotInitialized, StorageError
from cis.config import Config
from cis.store.crypto import KEY_FILE
from cis.store.schema import SCHEMA_VERSION
from cis.store.sqlite import BEHIND, Database, marks

MARKER = "zanzibar-quokka-7731 secret plan"


def _disk_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("cis.db*")))


def _digest(data_dir: Path) -> str:
    return hashlib.sha256(_disk_bytes(data_dir)).hexdigest()


def test_nothing_readable_on_disk_including_wal(data_dir: Path) -> None:
    with Node.open(data_dir) as node:
        node.memory.add(MARKER, tags=["quokkatag"], metadata={"note": "quokkameta"})
        node.memory.flush()
        assert (data_dir / "cis.db-wal").exists()
        raw = _disk_bytes(data_dir)
        for needle in (b"zanzibar", b"quokka", b"secret plan", b"SQLite format"):
            assert needle not in raw
        assert node.status().cipher == "chacha20"


def test_key_file_and_database_are_private(data_dir: Path) -> None:
    with Node.open(data_dir) as node:
        node.memory.add("private")
        for name in (KEY_FILE, "cis.db", "cis.db-wal"):
            assert (data_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert data_dir.stat().st_mode & 0o777 == 0o700


def test_wrong_key_is_refused_and_changes_nothing(data_dir: Path) -> None:
    with Node.open(data_dir) as node:
        node.memory.add("kept safe")
    before = _digest(data_dir)
    key = data_dir / KEY_FILE
    key.write_text(os.urandom(32).hex() + "\n")
    with pytest.raises(KeyMismatch, match="cannot be opened with this key"):
        Node.open(data_dir)
    assert _digest(data_dir) == before


def test_missing_key_file_is_reported(data_dir: Path) -> None:
    Node.open(data_dir).close()
    (data_dir / KEY_FILE).unlink()
    with pytest.raises(KeyMismatch, match=r"key file .* is missing"):
        Node.open(data_dir)


def test_key_file_readable_by_others_is_refused(data_dir: Path) -> None:
    Node.open(data_dir).close()
    (data_dir / KEY_FILE).chmod(0o644)
    with pytest.raises(KeyMismatch, match="chmod 600"):
        Node.open(data_dir)


def test_passphrase_mode(data_dir: Path) -> None:
    with Node.open(data_dir, passphrase="correct horse") as node:
        node.memory.add("locked by a passphrase")
    assert not (data_dir / KEY_FILE).exists()
    with pytest.raises(KeyMismatch):
        Node.open(data_dir, passphrase="wrong horse")
    with pytest.raises(KeyMismatch, match="set CIS_PASSPHRASE"):
        Node.open(data_dir, passphrase=None)
    with Node.open(data_dir, passphrase="correct horse") as node:
        assert node.memory.count() == 1


def test_open_without_create_needs_a_node(tmp_path: Path) -> None:
    with pytest.raises(NotInitialized, match="cis init"):
        Node.open(tmp_path / "none", create=False)


def test_schema_version_and_pragmas(node: Node) -> None:
    assert node.db.pragma("user_version") == SCHEMA_VERSION
    assert node.db.pragma("journal_mode") == "wal"
    assert node.db.pragma("synchronous") == 1  # NORMAL
    assert node.db.pragma("foreign_keys") == 1


def test_newer_schema_is_refused(data_dir: Path) -> None:
    with Node.open(data_dir) as node, node.db.write() as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer than this CIS"):
        Node.open(data_dir)


def test_full_disk_is_a_clear_error_and_nothing_half_written(node: Node) -> None:
    node.memory.add("before the disk filled")
    with node.db.write() as conn:
        pages = conn.execute("PRAGMA page_count").fetchall()[0][0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(StorageError, match="disk full"):
        node.memory.add_many([{"text": f"filler {i} " + "x" * 3000} for i in range(50)])
    assert node.memory.count() == 1
    assert node.memory.search("filler", mode="text") == []


def test_read_only_database_refuses_writes(data_dir: Path) -> None:
    Node.open(data_dir).close()
    key = bytes.fromhex((data_dir / KEY_FILE).read_text().strip())
    db = Database(data_dir / "cis.db", key, Config(), read_only=True)
    try:
        with pytest.raises(StorageError, match="read-only"), db.write():
            pass
        with db.read() as conn:
            assert conn.execute("SELECT count(*) FROM memories").fetchall()[0][0] == 0
    finally:
        db.close()


def test_garbage_file_is_not_mistaken_for_a_database(data_dir: Path) -> None:
    Node.open(data_dir).close()
    (data_dir / "cis.db").write_bytes(os.urandom(8192))
    for suffix in ("-wal", "-shm"):
        (data_dir / f"cis.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StorageError, match="is damaged"):
        Node.open(data_dir)
    assert apsw.sqlite_lib_version()


def test_a_schema_12_database_with_full_clocks_opens_and_keeps_its_memories(
    data_dir: Path,
) -> None:
    """A database of the layout before threads (schema 12, clocks in full) migrates: its
    memories read, change and search as before, and new rows use the compact clocks."""
    import msgspec

    from cis.memory.apply import stored_state
    from cis.memory.rows import Clocks, to_state

    with Node.open(data_dir, background=False) as node:
        kept = node.memory.add("the kayak is stored in the garage", tags=["boat"], key="kayak")
        with node.db.write() as conn:
            row = stored_state(conn, kept.id)
            assert row is not None
            state = to_state(row)
            origins = [state.last()[1]]
            full = Clocks(
                origins,
                [(name, r.hlc, 0) for name, r in state.registers.items() if name != "thread"],
                [(t.hlc, 0, t.position, t.name) for t in state.tags],
                [],
            )
            conn.execute("UPDATE memories SET clocks = ?", (msgspec.msgpack.encode(full),))
            conn.execute("DROP INDEX memories_scope_time")
            conn.execute(
                "CREATE INDEX memories_scope_time ON memories(scope,"
                " coalesce(event_at, created_at), id) WHERE deleted = 0"
            )
            conn.execute("ALTER TABLE memories DROP COLUMN thread")
            conn.execute("PRAGMA user_version = 12")
    with Node.open(data_dir, background=False) as node:
        assert node.db.pragma("user_version") == SCHEMA_VERSION
        assert node.memory.get("kayak") == kept
        changed = node.memory.set("kayak", "the kayak hangs in the shed", thread="boats")
        assert (changed.version, changed.tags, changed.thread) == (2, ("boat",), "boats")
        assert [h.memory.id for h in node.memory.search("kayak shed", mode="text")] == [kept.id]


def _wal_database(tmp_path: Path, pages: int) -> Database:
    return Database(tmp_path / "cis.db", os.urandom(32), Config(wal_autocheckpoint_pages=pages))


def _fill(db: Database, transactions: int) -> list[int]:
    """WAL sizes after each of `transactions` writes of about 21 pages."""
    sizes = []
    for _ in range(transactions):
        with db.write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
            conn.executemany("INSERT INTO t VALUES (randomblob(3000))", [()] * 20)
        sizes.append((db.path.parent / "cis.db-wal").stat().st_size)
    return sizes


def _copied(db: Database, count: int) -> bool:
    """Whether the checkpoint thread ran `count` checkpoints (waiting for it)."""
    deadline = time.monotonic() + 60
    while db._checkpoints.copies < count and time.monotonic() < deadline:
        time.sleep(0.01)  # the event is the thread's checkpoint
    return db._checkpoints.copies >= count


def test_the_wal_is_copied_back_on_a_thread_of_its_own(tmp_path: Path) -> None:
    db = _wal_database(tmp_path, pages=8)
    try:
        assert _copied(db, 1)  # the new file's schema passed the 8 pages: its copy first
        for n in range(2, 12):
            sizes = _fill(db, 1)  # each write passes the 8 pages: the thread copies it
            assert _copied(db, n)
        # each write started the WAL over: it holds about one write, not all ten
        assert sizes[0] <= 3 * 21 * (4096 + 24)
        with db.read() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchall()[0][0] == 200
    finally:
        db.close()
    assert not [t for t in threading.enumerate() if t.name == "cis-checkpoint"]


def test_the_writer_copies_the_wal_back_when_the_thread_cannot(tmp_path: Path) -> None:
    db = _wal_database(tmp_path, pages=8)

    def refuse() -> apsw.Connection:
        raise apsw.IOError("cannot open a connection")

    db._checkpoints._connect = refuse  # the thread fails every time
    try:
        sizes = _fill(db, 40)  # about 840 pages in all
        assert db._checkpoints.copies == 0
        # the WAL starts over once it passed BEHIND x 8 pages: at most that and a write
        assert max(sizes) <= (BEHIND * 8 + 2 * 21) * (4096 + 24)
    finally:
        db.close()


@given(st.lists(st.integers(0, 40), max_size=300))
def test_an_in_list_padded_to_its_size_class_selects_the_same_rows(values: list[int]) -> None:
    listed, bound = marks(values)
    assert listed.count("?") == len(bound) and set(bound) == set(values)
    assert len(bound) == (0 if not values else 1 << (len(values) - 1).bit_length())
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE TABLE t(x INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [(x,) for x in range(0, 41, 3)])
    rows = conn.execute(f"SELECT x FROM t WHERE x IN ({listed or 'NULL'})", bound).fetchall()
    assert sorted(x for (x,) in rows) == sorted({x for x in values if x % 3 == 0})
