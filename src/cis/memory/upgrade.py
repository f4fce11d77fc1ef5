"""The node's identity, made once: its key, and the replicated state of older memories.

Schema 6 added the cluster's columns; this fills them in Python, in one transaction,
the first time a node opens (a new node: when `cis init` makes it). Each memory gets
its state, stamped with its last update and this node as origin; a keyed memory takes
the id its scope and key give it everywhere; live public memory enters the signed log.
"""

from __future__ import annotations

import os

import apsw

from ..clock import COUNTER_BITS, Clock
from ..net import oplog
from ..net.identity import SEED_BYTES, Identity
from ..net.merge import State, create, edit
from ..store.sqlite import Database, scalar
from . import validate as check
from .rows import COLUMNS, clocks, to_memory


def identity(db: Database, clock: Clock) -> Identity:
    """This node's identity; made, with everything that needs it, on first open."""
    with db.read() as conn:
        seed = scalar(conn, "SELECT value FROM meta WHERE name = 'node_key'")
    if seed is None:
        with db.write() as conn:
            seed = scalar(conn, "SELECT value FROM meta WHERE name = 'node_key'")
            if seed is None:  # no other process made it meanwhile
                seed = os.urandom(SEED_BYTES)
                conn.execute("INSERT INTO meta VALUES ('node_key', ?)", (seed,))
                _fill_states(conn, Identity(seed), clock)
    return Identity(bytes(seed))


def _keyed_ids(conn: apsw.Connection) -> None:
    """Give each key's newest memory the id its scope and key name everywhere."""
    rows = conn.execute(
        "SELECT rid, scope, key FROM memories WHERE key IS NOT NULL"
        " ORDER BY scope, key, deleted, rid DESC"
    ).fetchall()
    done: set[tuple[str, str]] = set()
    for rid, scope, key in rows:
        pair = (str(scope), str(key))
        if pair not in done:
            done.add(pair)
            conn.execute("UPDATE memories SET id = ? WHERE rid = ?", (check.keyed_id(*pair), rid))


def _fill_states(conn: apsw.Connection, me: Identity, clock: Clock) -> None:
    _keyed_ids(conn)
    public: list[State] = []
    rows = conn.execute(f"SELECT {COLUMNS}, deleted FROM memories ORDER BY rid").fetchall()
    newest = 0
    for row in rows:
        m = to_memory(row)
        stamp = m.updated_at << COUNTER_BITS
        newest = max(newest, stamp)
        values = {
            "text": m.text,
            "domain": m.domain,
            "category": m.category,
            "metadata": m.metadata,
            "event_at": m.event_at,
        }
        state = create(m.id, m.scope, m.key, m.created_at, stamp, me.did, values, m.tags)
        if row[-1]:  # a tombstone
            state = edit(state, stamp, me.did, {"alive": False})
        conn.execute(
            "UPDATE memories SET clocks = ?, hlc = ?, origin = ? WHERE rid = ?",
            (clocks(state), stamp, me.did, row[0]),
        )
        if m.domain == "public" and not row[-1]:
            public.append(state)
    conn.execute(
        "UPDATE memory_history SET hlc = at << ?, origin = ? WHERE origin = ''",
        (COUNTER_BITS, me.did),
    )
    hlc = clock.next(max(newest, int(scalar(conn, "SELECT value FROM meta WHERE name = 'hlc'"))))
    conn.execute("UPDATE meta SET value = ? WHERE name = 'hlc'", (hlc,))
    if public:
        oplog.append(conn, me, oplog.head(conn, me.did), hlc, public)
