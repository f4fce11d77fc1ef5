"""A memory's thread: the memories around it in its scope, in the order every replica
shares (event time, else creation time, then id; never local row order). Search reads
their words as a second field of a memory (cis.index.fields).

A thread is explicit where the writer knows it: the memories of one `thread` name in a
scope, or of one session scope (session/<id>); there every neighbour lends its words at
EXPLICIT weight, however far apart in time. Otherwise it is inferred: the memories of the
scope without a thread name, within WINDOW_MS of each other, weighted by how coherent
the stretch between them is, so notes of one sitting about unrelated things do not lend
each other words.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import apsw
import msgspec
import numpy as np

from ..index.fields import FAR, NEAR, Floats, Ints, pairs
from ..index.vectors import VectorIndex

WINDOW_MS = 30 * 60 * 1000  # an inferred thread's memories stand within half an hour
# an explicit thread's coherence: the writer says its memories belong together, but a
# conversation's turns still drift from subject to subject (chosen on LoCoMo's dev
# conversations with each session a thread; 1.0 lent too much, see the README)
EXPLICIT = 0.5
REACH = FAR + NEAR  # memories read on either side of a word hit

_T = "coalesce({m}.event_at, {m}.created_at)"
_PART = (
    "SELECT * FROM (SELECT n.rid AS rid, " + _T.format(m="n") + " AS t, n.id AS id"
    " FROM memories n WHERE n.scope = c.scope AND n.thread IS c.thread AND n.deleted = 0"
    " AND {where} ORDER BY " + _T.format(m="n") + " {order}, n.id {order} LIMIT {count})"
)
# the memories on one side: those of the same time past its id, then those of a later
# (earlier) time; two ranges of the index memories_scope_time, each a few rows long
_SIDE = (
    "(SELECT group_concat(rid || ':' || t) FROM ("
    + _PART.replace("{where}", _T.format(m="n") + " = " + _T.format(m="c") + " AND n.id {op} c.id")
    + " UNION ALL "
    + _PART.replace("{where}", _T.format(m="n") + " {op} " + _T.format(m="c"))
    + " ORDER BY t {order}, id {order} LIMIT {count}))"
)
_SQL = (
    "SELECT c.rid, coalesce(c.event_at, c.created_at),"
    " c.thread IS NOT NULL OR c.scope LIKE 'session/%', "
    + _SIDE.format(op="<", order="DESC", count=REACH)
    + ", "
    + _SIDE.format(op=">", order="ASC", count=REACH)
    + " FROM memories c WHERE c.rid IN ({marks})"
)


class Threads(msgspec.Struct, frozen=True):
    """The memories read around some word hits: `rids` (positions 0..n-1) and the
    (memory, neighbour, weight) triples between them."""

    rids: list[int]
    around: tuple[Ints, Ints, Floats]

    def neighbours(self, rid: int) -> list[int]:
        """The memories whose words lend `rid` weight (its thread's nearest)."""
        at = self.rids.index(rid)
        mine, theirs, _ = self.around
        return [self.rids[int(j)] for j in theirs[mine == at]]


def _runs(
    conn: apsw.Connection, rids: Sequence[int]
) -> tuple[list[list[int]], dict[int, int], set[int]]:
    """For each rowid, the ordered run of memories around it (itself included); every
    memory's time; the rowids whose thread is explicit (so is their run's)."""
    runs: list[list[int]] = []
    times: dict[int, int] = {}
    explicit: set[int] = set()
    sql = _SQL.format(marks=",".join("?" * len(rids)))
    for rid, when, named, before, after in conn.execute(sql, list(rids)):
        times[int(rid)] = int(when)
        if named:
            explicit.add(int(rid))
        sides: list[list[int]] = []
        for side in (before, after):
            members = []
            for item in str(side or "").split(","):
                if item:
                    other, other_when = item.split(":")
                    members.append(int(other))
                    times[int(other)] = int(other_when)
            sides.append(members)
        runs.append([*reversed(sides[0]), int(rid), *sides[1]])
    return runs, times, explicit


def _segments(runs: list[list[int]]) -> list[list[int]]:
    """Overlapping runs joined into maximal stretches of consecutive memories."""
    after: dict[int, int] = {}
    before: dict[int, int] = {}
    for run in runs:
        for a, b in itertools.pairwise(run):
            after[a], before[b] = b, a
    out = []
    for start in sorted({r for run in runs for r in run if r not in before}):
        segment = [start]
        while segment[-1] in after:
            segment.append(after[segment[-1]])
        out.append(segment)
    return out


def threads(conn: apsw.Connection, index: VectorIndex, rids: Sequence[int]) -> Threads:
    """The threads around `rids`: who lends whom words, and with what weight."""
    if not rids:
        empty = np.empty(0, np.int64)
        return Threads([], (empty, empty, np.empty(0)))
    runs, times, explicit = _runs(conn, rids)
    segments = _segments(runs)
    named = [not explicit.isdisjoint(s) for s in segments]  # a segment is of one thread
    members = [r for segment in segments for r in segment]
    links = index.links(
        [
            (a, b)
            for s, n in zip(segments, named, strict=True)
            if not n
            for a, b in itertools.pairwise(s)
        ]
    )
    runs_of = np.array([n for n, s in enumerate(segments) for _ in s], dtype=np.int64)
    flat_links = np.array(
        [
            EXPLICIT if n else links.get((a, b), 0.0)
            for s, n in zip(segments, named, strict=True)
            for a, b in [*itertools.pairwise(s), (0, 0)]
        ]
    )
    timed = np.array([not n for s, n in zip(segments, named, strict=True) for _ in s])
    around = pairs(runs_of, np.array([times[r] for r in members]), flat_links, WINDOW_MS, timed)
    return Threads(members, around)


def lengths(conn: apsw.Connection, rids: Sequence[int]) -> dict[int, float]:
    """Each memory's length in index terms (all columns), from FTS5's docsize table."""
    if not rids:
        return {}
    marks = ",".join("?" * len(rids))
    rows = conn.execute(
        f"SELECT id, sz FROM memories_fts_docsize WHERE id IN ({marks})", list(rids)
    )
    return {int(rid): float(_total(bytes(sz))) for rid, sz in rows}


def _total(blob: bytes) -> int:
    """The sum of the SQLite varints in `blob` (the column sizes FTS5 keeps per row)."""
    if max(blob, default=0) < 0x80:  # every size below 128: one byte each
        return sum(blob)
    return sum(_varints(blob))


def _varints(blob: bytes) -> list[int]:
    """SQLite varints."""
    out, value, taken = [], 0, 0
    for byte in blob:
        taken += 1
        if taken == 9:
            out.append((value << 8) | byte)
            value, taken = 0, 0
        elif byte & 0x80:
            value = (value << 7) | (byte & 0x7F)
        else:
            out.append((value << 7) | byte)
            value, taken = 0, 0
    return out
