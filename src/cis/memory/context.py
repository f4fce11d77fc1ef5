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
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import apsw
import msgspec
import numpy as np
import numpy.typing as npt

from ..index.fields import FAR, NEAR, Floats, Ints, pairs
from ..index.text import Columns
from ..index.vectors import VectorIndex
from ..store.sqlite import marks, scalar
from ..yielding import hand_over

if TYPE_CHECKING:
    from .order import Carried, Order

WINDOW_MS = 30 * 60 * 1000  # an inferred thread's memories stand within half an hour
# an explicit thread's coherence: the writer says its memories belong together, but a
# conversation's turns still drift from subject to subject (chosen on LoCoMo's dev
# conversations with each session a thread; 1.0 lent too much, see the README)
EXPLICIT = 0.5
REACH = FAR + NEAR  # memories read on either side of a word hit
LINK_CHUNK = 4096  # cosines of consecutive memories measured between hand-overs

_T = "coalesce({m}.event_at, {m}.created_at)"
_PART = (
    "SELECT * FROM (SELECT n.rid AS rid, " + _T.format(m="n") + " AS t, n.id AS id"
    " FROM memories n WHERE n.scope = c.scope AND n.thread IS c.thread AND n.deleted = 0"
    " AND {where} ORDER BY {by} LIMIT {count})"
)
# the memories on one side: those of the same time past its id, then those of a later
# (earlier) time; two ranges of the index memories_scope_time, each a few rows long, read
# in the index's order (the same-time range ordered by id alone: with the time in its
# ORDER BY too, SQLite sorted the whole range, 5x slower for memories added in bulk)
_SIDE = (
    "(SELECT group_concat(rid || ',' || t) FROM ("
    + _PART.replace(
        "{where}", _T.format(m="n") + " = " + _T.format(m="c") + " AND n.id {op} c.id"
    ).replace("{by}", "n.id {order}")
    + " UNION ALL "
    + _PART.replace("{where}", _T.format(m="n") + " {op} " + _T.format(m="c")).replace(
        "{by}", _T.format(m="n") + " {order}, n.id {order}"
    )
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
    (memory, neighbour, weight) triples between them; `read`: how many runs came from SQL."""

    rids: list[int]
    around: tuple[Ints, Ints, Floats]
    read: int = 0

    def neighbours(self, rid: int) -> list[int]:
        """The memories whose words lend `rid` weight (its thread's nearest)."""
        at = self.rids.index(rid)
        mine, theirs, _ = self.around
        return [self.rids[int(j)] for j in theirs[mine == at]]


# a run's row for each of its memories: rowid, time, and its cosine with the next
RUN_ROW = np.dtype([("member", "<i8"), ("time", "<i8"), ("link", "<f8")])


class Run(msgspec.Struct, frozen=True):
    """The memories around one (itself among them) in its thread's order, one RUN_ROW
    each (the link 0 for the last, where one has no vector yet, and in an explicit
    thread, where it is unused), and whether the thread is explicit. One bytes object:
    a run of 17 memories holds 490 bytes, about 550 with its place in the cache (three
    arrays took 890, tuples 1,660)."""

    rows: bytes
    explicit: bool


class Lengths:
    """Each memory's length in index terms (all columns, as FTS5 counts them), by rowid,
    in one float32 array (NaN: not read yet): 4 bytes a rowid, so the lengths of every
    memory of a large node fit (at 100k a search reads about 300 of them)."""

    LARGEST = 1 << 24  # rowids past this are read each time (64 MB of array at most)

    def __init__(self) -> None:
        self._of = np.empty(0, np.float32)

    def put(self, found: dict[int, float]) -> None:
        rids = np.fromiter(found.keys(), np.int64, len(found))
        keep = rids < self.LARGEST
        if keep.any():
            self._grow(int(rids[keep].max()))
            self._of[rids[keep]] = np.fromiter(found.values(), np.float32, len(found))[keep]

    def of(self, conn: apsw.Connection, rids: list[int]) -> Floats:
        """The lengths of `rids` (0 for one without words), reading those not known from
        FTS5's docsize table."""
        at = np.asarray(rids, np.int64)
        out = np.full(len(at), np.nan)
        held = at < len(self._of)
        out[held] = self._of[at[held]]
        unknown = np.isnan(out)
        if unknown.any():
            missing = at[unknown].tolist()
            listed, values = marks(missing)
            sql = f"SELECT id, sz FROM memories_fts_docsize WHERE id IN ({listed})"
            found = dict.fromkeys(missing, 0.0)  # no words: length 0
            rows = conn.execute(sql, values)
            found.update((int(rid), float(_total(bytes(sz)))) for rid, sz in rows)
            self.put(found)
            out[unknown] = np.fromiter(map(found.__getitem__, missing), np.float64, len(missing))
        return out

    def forget(self, rids: list[int]) -> None:
        """Read the lengths of `rids` again when next asked."""
        at = np.asarray(rids, np.int64)
        self._of[at[at < len(self._of)]] = np.nan

    def _grow(self, largest: int) -> None:
        if largest >= len(self._of):
            grown = np.full(max(largest + 1, 2 * len(self._of)), np.nan, np.float32)
            grown[: len(self._of)] = self._of
            self._of = grown


class Seen(msgspec.Struct):
    """What is known of memories at one state of the node: runs, index lengths, and the
    index terms of each column (cis.index.text.columns_of)."""

    runs: dict[int, Run]
    lengths: Lengths
    columns: dict[int, Columns]

    def __len__(self) -> int:
        """Runs and terms held (lengths take 4 bytes a rowid and are not counted)."""
        return len(self.runs) + len(self.columns)


# memories changed (added, edited, removed, given a vector) since the state known, at
# most, for it to be carried forward: each costs its run read (at 100k, the first search
# after an add of 1,000 with vectors took 33 ms against 23 ms when everything was dropped,
# and the next 300 searches 3.2-4.7 ms p50 each against 5.0-5.9 ms, until the thread
# order was read again)
CARRIED_MAX = 1024
REREAD_MAX = 1024  # runs a change touched that are read again at once, at most
ROWS_MAX = 4 * CARRIED_MAX  # rows of history and of the vector log those changes wrote
# a state of the data: the last row of the memories' history, and of the vector log the
# vector index holds (every change of a memory writes history, every vector the log)
State = tuple[int, int]
HISTORY_MARK = "SELECT coalesce(max(seq), 0) FROM memory_history"


class Known:
    """Runs, index lengths and index terms of memories, as of one state of the node (the
    last row of the memories' history and of the vector log taken into the vector index).
    All are properties of the data, not of a query, so every search after the first reads
    them here instead of from the database. A later state (adds, vectors that came,
    edits, removals) keeps what it knew, with the runs of the memories around each
    changed one (now, and before for one edited or removed) read again, and the terms
    and length of one edited or removed forgotten. More than CARRIED_MAX changed
    memories, or an edited or removed memory whose run before is neither known nor in
    the thread order, drop everything. Past `capacity` runs and terms, the older half of
    each goes (those read first): at 100k memories, hits that recur stay known, where
    dropping everything kept 10% of the runs a search asks for."""

    # at most about 48 MB (550 bytes a run, 250 for the terms of a 12-word memory); at
    # 100k memories a search ran in 5.4 ms of CPU with 120k, 6.9-8.2 ms with 60k
    def __init__(self, capacity: int = 120_000):
        self.capacity = capacity
        self.state: State | None = None
        # the last change of state: from, to, and the memories whose runs it touched
        # (None: not carried over, everything dropped)
        self.moved: tuple[State | None, State, frozenset[int] | None] | None = None
        self._seen = Seen({}, Lengths(), {})

    def at(
        self,
        conn: apsw.Connection,
        index: VectorIndex,
        logged: int,
        order: Carried | None = None,
    ) -> Seen:
        """What is known at the state of `conn`'s snapshot, with the vector index holding
        the vector log up to `logged` (a vector logged later is carried forward when the
        index takes it in); `order`, the thread order at the state known until now, gives
        the runs an edit or a removal leaves."""
        state = (int(scalar(conn, HISTORY_MARK)), logged)
        if state != self.state:
            touched = (
                None if self.state is None else self._carry(conn, index, self.state, state, order)
            )
            if touched is None:
                self._seen = Seen({}, Lengths(), {})
            self.moved = (self.state, state, touched)
            self.state = state
        elif len(self._seen) > self.capacity:
            for held in (self._seen.runs, self._seen.columns):
                for rid in list(itertools.islice(held, len(held) // 2)):
                    del held[rid]
        return self._seen

    def _carry(
        self,
        conn: apsw.Connection,
        index: VectorIndex,
        was: State,
        now: State,
        order: Carried | None,
    ) -> frozenset[int] | None:
        """Read again the runs the changes from `was` to `now` touch (forget them, past
        REREAD_MAX), and name them; None if nothing may be kept (too many changes, or an
        edited or removed memory whose run at `was` is not known)."""
        if now[0] < was[0] or now[1] < was[1]:
            return None  # a history that went back: another file, or a restored one
        ops = [
            (int(rid), str(op))
            for rid, op in conn.execute(
                "SELECT memory_rid, op FROM memory_history WHERE seq > ? AND seq <= ? LIMIT ?",
                (was[0], now[0], ROWS_MAX + 1),
            )
        ]
        logged = [
            int(rid)
            for (rid,) in conn.execute(
                "SELECT rid FROM index_log WHERE seq > ? AND seq <= ? LIMIT ?",
                (was[1], now[1], ROWS_MAX + 1),
            )
        ]
        # an add with its vector is one change (a row of each)
        changed = sorted({rid for rid, _ in ops} | set(logged))
        if max(len(ops), len(logged)) > ROWS_MAX or len(changed) > CARRIED_MAX:
            return None
        # a memory's run changes only where a changed one stands within its reach: in the
        # changed one's run now, or, for one edited or removed, in its run before
        left = sorted({rid for rid, op in ops if op != "add"})
        known = self._seen.runs
        before = {rid: known[rid] for rid in left if rid in known}
        if order is not None:
            before.update(order.runs([rid for rid in left if rid not in before]))
        if len(before) < len(left):
            return None
        now_runs = _read_runs(conn, index, changed) if changed else {}
        touched = {
            rid
            for run in [*before.values(), *now_runs.values()]
            for rid in np.frombuffer(run.rows, RUN_ROW)["member"].tolist()
        }
        seen = self._seen
        for rid in touched:
            seen.runs.pop(rid, None)
        for rid in left:  # their words may have changed
            seen.columns.pop(rid, None)
        seen.lengths.forget(left)
        # the touched ones' runs read now, so that a later edit or removal of one of them
        # is carried over too (recent memories touch each other: an edit of one soon
        # found its run gone); not a removed one's: no live memory's run holds it, so no
        # later change would name it
        if touched and len(touched) <= REREAD_MAX:
            listed, values = marks(sorted(touched))
            live = f"SELECT rid FROM memories WHERE rid IN ({listed}) AND deleted = 0"
            alive = [int(rid) for (rid,) in conn.execute(live, values)]
            seen.runs.update((rid, now_runs[rid]) for rid in alive if rid in now_runs)
            rest = [rid for rid in alive if rid not in now_runs]  # those not read above
            if rest:
                seen.runs.update(_read_runs(conn, index, rest))
        return frozenset(touched)


def _read_runs(conn: apsw.Connection, index: VectorIndex, rids: Sequence[int]) -> dict[int, Run]:
    """The run of each rowid, from the database and the vector index."""
    read: list[tuple[int, list[int], list[int], bool]] = []
    listed, values = marks(rids)
    for rid, when, named, before, after in conn.execute(_SQL.format(marks=listed), values):
        # each side "rowid,time,rowid,time...", nearest first
        earlier = list(map(int, str(before).split(","))) if before else []
        later = list(map(int, str(after).split(","))) if after else []
        members = [*earlier[-2::-2], int(rid), *later[0::2]]
        times = [*earlier[::-2], int(when), *later[1::2]]
        read.append((int(rid), members, times, bool(named)))
    sizes = np.fromiter((len(members) for _, members, _, _ in read), np.int64, len(read))
    rows = np.zeros(int(sizes.sum()), RUN_ROW)
    rows["member"] = [m for _, members, _, _ in read for m in members]
    rows["time"] = [t for _, _, times, _ in read for t in times]
    explicit = np.fromiter((named for _, _, _, named in read), bool, len(read))
    link(rows, sizes, explicit, index)
    return runs_of([rid for rid, _, _, _ in read], rows, sizes, explicit)


def link(
    rows: np.ndarray,
    sizes: Ints,
    explicit: npt.NDArray[np.bool_],
    index: VectorIndex,
    stopping: threading.Event | None = None,
) -> bool:
    """Set the link of RUN_ROW `rows`, laid out run after run (`sizes` rows each): each
    member's cosine with the next, all but a run's last, in inferred threads only (0
    where one has no vector yet); LINK_CHUNK pairs at a time, handing over between them.
    False if `stopping` is set meanwhile."""
    linked = ~np.repeat(explicit, sizes)
    linked[np.cumsum(sizes) - 1] = False
    at = np.flatnonzero(linked)
    for part in range(0, len(at), LINK_CHUNK):
        if part:
            hand_over()
            if stopping is not None and stopping.is_set():
                return False
        here = at[part : part + LINK_CHUNK]
        cosines = index.links(rows["member"][here], rows["member"][here + 1])
        rows["link"][here] = np.nan_to_num(cosines, nan=0.0)
    return True


def runs_of(
    rids: Sequence[int], rows: np.ndarray, sizes: Ints, explicit: npt.NDArray[np.bool_]
) -> dict[int, Run]:
    """The Run of each of `rids` from RUN_ROW `rows` laid out run after run (`sizes`
    rows each, `explicit` whether each run's thread is)."""
    packed, ends, width = rows.tobytes(), np.cumsum(sizes).tolist(), RUN_ROW.itemsize
    return {
        rid: Run(packed[(end - size) * width : end * width], named)
        for rid, end, size, named in zip(rids, ends, sizes.tolist(), explicit.tolist(), strict=True)
    }


class Stretches(msgspec.Struct, frozen=True):
    """Runs joined where they overlap into maximal stretches of consecutive memories of
    one thread, laid out stretch after stretch (ordered by their first memory's rowid),
    each in its thread's order: the memories, their stretch's number, their times,
    whether their thread is explicit, and each one's coherence with the next (0 at a
    stretch's end)."""

    members: Ints
    segments: Ints
    times: Ints
    explicit: npt.NDArray[np.bool_]
    links: Floats


def stretches(runs: Sequence[Run]) -> Stretches:
    """The runs (of one state of the node, so that they agree on who follows whom)
    joined into stretches, in numpy: each memory's successor, then each one's first
    memory and distance from it by pointer jumping."""
    table = np.frombuffer(b"".join(run.rows for run in runs), RUN_ROW)
    if not len(table):
        empty = np.empty(0, np.int64)
        return Stretches(empty, empty, empty, np.empty(0, bool), np.empty(0))
    sizes = np.fromiter((len(run.rows) for run in runs), np.int64, len(runs)) // RUN_ROW.itemsize
    at, link = table["member"], table["link"]
    inner = np.ones(len(at), bool)
    inner[np.cumsum(sizes) - 1] = False  # each run's last position
    after = np.full(len(at), -1, np.int64)  # the next memory in the run, -1 at its end
    after[inner] = at[1:][inner[:-1]]
    # one row a memory: the one of an occurrence with a successor where there is one
    order = np.lexsort((-after, at))
    first = np.ones(len(order), bool)
    first[1:] = at[order][1:] != at[order][:-1]
    row = order[first]
    members = at[row]  # ascending
    group = np.empty(len(at), np.int64)  # each position's memory (its row)
    group[order] = np.cumsum(first) - 1
    explicit = np.zeros(len(members), bool)
    explicit[group[np.repeat([run.explicit for run in runs], sizes)]] = True
    nxt = after[row]
    has = nxt >= 0
    back = np.arange(len(members))  # each memory's predecessor (itself for a first)
    back[np.searchsorted(members, nxt[has])] = np.flatnonzero(has)
    head, distance = back, (back != np.arange(len(members))).astype(np.int64)
    for _ in range(len(members).bit_length() + 1):
        further = head[head]
        if (further == head).all():
            break
        distance, head = distance + distance[head], further
    settled = head[head] == head  # a cycle (runs of different states) has no first
    segment = np.unique(members[head], return_inverse=True)[1]
    laid = np.lexsort((distance, segment))
    laid = laid[settled[laid]]
    return Stretches(
        members[laid], segment[laid], table["time"][row][laid], explicit[laid], link[row][laid]
    )


def threads(
    conn: apsw.Connection,
    index: VectorIndex,
    rids: Sequence[int],
    known: dict[int, Run] | None = None,
    order: Order | Carried | None = None,
) -> Threads:
    """The threads around `rids`: who lends whom words, and with what weight. Each run
    comes from `known` (runs read before), else from `order`, else from SQL (and then
    goes into `known`)."""
    known = {} if known is None else known
    wanted = list(dict.fromkeys(rids))
    unknown = [r for r in wanted if r not in known]
    cut = order.runs(unknown) if order is not None and unknown else {}
    missing = [r for r in unknown if r not in cut]
    if missing:
        known.update(_read_runs(conn, index, missing))
    joined = stretches(
        [known[r] if r in known else cut[r] for r in wanted if r in known or r in cut]
    )
    if not len(joined.members):
        empty = np.empty(0, np.int64)
        return Threads([], (empty, empty, np.empty(0)), len(missing))
    named = joined.explicit
    around = pairs(
        joined.segments,
        joined.times,
        np.where(named, EXPLICIT, joined.links),  # a segment is of one thread: named or not
        WINDOW_MS,
        ~named,
    )
    taking = _taking_part(joined.members, np.asarray(wanted, dtype=np.int64), around)
    return msgspec.structs.replace(taking, read=len(missing))


def _taking_part(members: Ints, hits: Ints, around: tuple[Ints, Ints, Floats]) -> Threads:
    """The threads of only the memories that take part: the hits, and those that lend
    or are lent words. Any other one has no score; left out, its length is not read and
    does not count in the typical length BM25F scores against."""
    mine, theirs, weight = around
    part = np.isin(members, hits)
    part[mine] = True
    part[theirs] = True
    if part.all():
        return Threads(members.tolist(), around)
    at = np.cumsum(part) - 1  # each member's position among those taking part
    return Threads(members[part].tolist(), (at[mine], at[theirs], weight))


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
