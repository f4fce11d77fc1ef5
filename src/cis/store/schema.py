"""Database schema and its migrations, versioned by PRAGMA user_version."""

from __future__ import annotations

import apsw

from ..errors import StorageError

MIGRATIONS: tuple[str, ...] = (
    # 1: memories, their words, vectors, history and the change logs.
    """
    CREATE TABLE memories(
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        key TEXT,
        scope TEXT NOT NULL,
        domain TEXT NOT NULL,
        category TEXT NOT NULL,
        text TEXT NOT NULL,
        tags TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        event_at INTEGER,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        content_hash BLOB NOT NULL
    );
    CREATE UNIQUE INDEX memories_scope_key ON memories(scope, key)
        WHERE key IS NOT NULL AND deleted = 0;
    CREATE INDEX memories_scope ON memories(scope, rid);
    CREATE INDEX memories_hash ON memories(content_hash);
    CREATE VIRTUAL TABLE memories_fts USING fts5(
        text, tags, content='', contentless_delete=1,
        tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TABLE memory_vectors(
        rid INTEGER PRIMARY KEY REFERENCES memories(rid),
        model TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE TABLE memory_history(
        memory_rid INTEGER NOT NULL REFERENCES memories(rid),
        version INTEGER NOT NULL,
        op TEXT NOT NULL,
        text TEXT NOT NULL,
        tags TEXT NOT NULL,
        metadata TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY(memory_rid, version)
    ) WITHOUT ROWID;
    CREATE TABLE embed_queue(
        rid INTEGER PRIMARY KEY,
        claimed_by TEXT,
        claimed_at INTEGER
    );
    CREATE TABLE index_log(seq INTEGER PRIMARY KEY AUTOINCREMENT, rid INTEGER NOT NULL);
    CREATE TABLE meta(name TEXT PRIMARY KEY, value) WITHOUT ROWID;
    INSERT INTO meta VALUES ('generation', 0);
    """,
    # 2: how many memories hold each indexed word, for choosing a query's rarest words.
    """
    CREATE VIRTUAL TABLE memories_vocab USING fts5vocab('memories_fts', 'row');
    """,
    # 3: API tokens for the HTTP and MCP shells (only a hash of each secret is kept).
    """
    CREATE TABLE tokens(
        name TEXT PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        scope TEXT,
        read_only INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    ) WITHOUT ROWID;
    """,
    # 4: DAG workflow runs: every state change of a run and its tasks, and their output.
    """
    CREATE TABLE dag_runs(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        inputs TEXT NOT NULL,
        concurrency TEXT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT,
        cancel INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        error TEXT
    ) WITHOUT ROWID;
    CREATE TABLE dag_tasks(
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at INTEGER,
        finished_at INTEGER,
        exit_code INTEGER,
        output TEXT,
        error TEXT,
        retryable INTEGER NOT NULL DEFAULT 0,
        process TEXT,
        PRIMARY KEY(run_id, task_id)
    ) WITHOUT ROWID;
    CREATE TABLE dag_logs(
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY(run_id, task_id, seq)
    ) WITHOUT ROWID;
    """,
    # 5: a scope's live memories counted from an index alone (word statistics per scope).
    """
    CREATE INDEX memories_live_scope ON memories(scope) WHERE deleted = 0;
    """,
    # 6: the cluster. The clocks of each memory's replicated state (its values are the
    # row's columns), its latest clock and origin; history keeps every value seen, with
    # its origin (so a concurrent edit's loser stays); the signed log of public changes;
    # the clock.
    # The node's key and the states of older rows are made by memory/upgrade.py.
    """
    ALTER TABLE memories ADD COLUMN clocks BLOB;
    ALTER TABLE memories ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE memories ADD COLUMN origin TEXT NOT NULL DEFAULT '';
    CREATE TABLE history(
        seq INTEGER PRIMARY KEY,
        memory_rid INTEGER NOT NULL REFERENCES memories(rid),
        version INTEGER NOT NULL,
        op TEXT NOT NULL,
        text TEXT NOT NULL,
        tags TEXT NOT NULL,
        metadata TEXT NOT NULL,
        at INTEGER NOT NULL,
        hlc INTEGER NOT NULL DEFAULT 0,
        origin TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO history(memory_rid, version, op, text, tags, metadata, at)
        SELECT memory_rid, version, op, text, tags, metadata, at FROM memory_history
        ORDER BY memory_rid, version;
    DROP TABLE memory_history;
    ALTER TABLE history RENAME TO memory_history;
    CREATE INDEX memory_history_rid ON memory_history(memory_rid, seq);
    CREATE TABLE ops(
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hlc INTEGER NOT NULL,
        memory_id TEXT NOT NULL,
        body BLOB NOT NULL,
        hash BLOB NOT NULL,
        signature BLOB,
        PRIMARY KEY(origin, seq)
    ) WITHOUT ROWID;
    INSERT INTO meta VALUES ('hlc', 0);
    """,
    # 7: a scope's memories in the order every replica shares (time, then id): search
    # takes a memory's neighbours from it.
    """
    CREATE INDEX memories_scope_time
        ON memories(scope, coalesce(event_at, created_at), id) WHERE deleted = 0;
    """,
    # 8: the peers this node syncs with (each one allowed), and the audit of sync: every
    # accepted and refused connection, every refused op.
    """
    CREATE TABLE peers(
        did TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        last_seen INTEGER,
        last_error TEXT
    ) WITHOUT ROWID;
    CREATE TABLE audit(
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        did TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 9: trust lists: a DID allowed or denied (deny wins), with a reason and an expiry.
    """
    CREATE TABLE acl(
        did TEXT PRIMARY KEY,
        verdict TEXT NOT NULL,
        reason TEXT NOT NULL,
        expires_at INTEGER,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta VALUES ('network_mode', 'whitelist');
    """,
    # 10: one-time pairing codes (kept in the encrypted database, removed once used).
    """
    CREATE TABLE pair_codes(
        code TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 11: quarantine: verified ops of a peer not yet trusted, held apart until approved;
    # and per sender and origin, the seq up to which its ops were rejected.
    """
    CREATE TABLE held(
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        sender TEXT NOT NULL,
        origin TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        last_hash BLOB NOT NULL,
        ops BLOB NOT NULL,
        vectors BLOB NOT NULL
    );
    CREATE INDEX held_origin ON held(origin, last_seq);
    CREATE TABLE rejected(
        sender TEXT NOT NULL,
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY(sender, origin)
    ) WITHOUT ROWID;
    """,
    # 12: nodes heard on the local network (mDNS): hints of where a DID's listener is.
    """
    CREATE TABLE nearby(
        did TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        heard_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 13: a memory's thread where its writer names one; a memory's neighbours in search
    # are those of its scope and thread (no thread: the others without one), in order.
    """
    ALTER TABLE memories ADD COLUMN thread TEXT;
    DROP INDEX memories_scope_time;
    CREATE INDEX memories_scope_time
        ON memories(scope, thread, coalesce(event_at, created_at), id) WHERE deleted = 0;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: apsw.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION inside the caller's transaction; return old version."""
    version = int(conn.execute("PRAGMA user_version").fetchall()[0][0])  # type: ignore[arg-type]
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"database schema {version} is newer than this CIS ({SCHEMA_VERSION}); upgrade CIS"
        )
    for number in range(version, SCHEMA_VERSION):
        conn.execute(MIGRATIONS[number])
    if version != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return version
