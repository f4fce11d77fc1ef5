"""Every live memory's place in its thread, read once for one state of the node, so that
a search cuts the run around each word hit (cis.memory.context) out of arrays.

Read from SQL, a run costs four short range scans: at 100k memories the runs of a
search's 50 word hits took 2.2-2.8 ms where no search had read them before, against
0.55-0.7 ms cut from the order. Reading the whole order costs about 2 us a memory (0.2 s
at 100k, most of it in SQLite, outside the interpreter lock), a run from SQL 25-50 us;
so once the runs read from SQL at one state cost about what the order does, it is read
in the background (ski rental: it never costs much more than it saves). A write leaves
every run as it was but those around the memories it changed (cis.memory.context.Known
names them), which come from SQL from then on; a write Known cannot carry over, or more
than TOUCHED_MAX such memories, and the order is unused until read again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import apsw
import msgspec
import numpy as np

from ..index.vectors import VectorIndex
from ..store.sqlite import Database, scalar
from .context import HISTORY_MARK, REACH, RUN_ROW, Known, Run, State, link, runs_of

if TYPE_CHECKING:
    from .freshness import Freshness

log = logging.getLogger("cis.index")

RATIO = 10  # one run read from SQL costs what this many memories of the order cost
TOUCHED_MAX = 4096  # memories whose runs have changed since the order was read, at most

# each thread in one row, its members and their times in its order (the ordered
# aggregates read the index memories_scope_time; parsed in numpy, not row by row)
_BY = "ORDER BY coalesce(event_at, created_at), id"
_ORDER = (
    "SELECT thread IS NOT NULL OR scope LIKE 'session/%',"
    f" group_concat(rid, ',' {_BY}), group_concat(coalesce(event_at, created_at), ',' {_BY})"
    " FROM memories WHERE deleted = 0 GROUP BY scope, thread"
)


class Order:
    """The live memories of one state, thread after thread, each thread in the order
    every replica shares: a RUN_ROW each (the link with the next of its thread, 0 at a
    thread's end and in an explicit thread), where each thread begins, and whether it is
    explicit."""

    def __init__(self, table: np.ndarray, starts: np.ndarray, explicit: np.ndarray):
        self._table = table
        self._starts = starts
        self._ends = np.append(starts[1:], len(table))
        self._explicit = explicit
        self._thread = np.repeat(np.arange(len(starts)), self._ends - starts)
        self._by_rid = np.argsort(table["member"])
        self._rids = table["member"][self._by_rid]

    def runs(self, rids: Sequence[int]) -> dict[int, Run]:
        """The run of each live rowid of `rids`, as cis.memory.context reads it from SQL:
        up to REACH memories of its thread on either side, the last one's link 0."""
        wanted = np.asarray(rids, dtype=np.int64)
        i = np.minimum(np.searchsorted(self._rids, wanted), max(0, len(self._rids) - 1))
        live = self._rids[i] == wanted if len(self._rids) else np.zeros(len(wanted), bool)
        pos, found = self._by_rid[i[live]], wanted[live]
        if not len(pos):
            return {}
        thread = self._thread[pos]
        low = np.maximum(pos - REACH, self._starts[thread])
        high = np.minimum(pos + REACH + 1, self._ends[thread])
        sizes = high - low
        ends = np.cumsum(sizes)
        rows = self._table[np.repeat(low - (ends - sizes), sizes) + np.arange(int(ends[-1]))]
        rows["link"][ends - 1] = 0.0
        return runs_of(found.tolist(), rows, sizes, self._explicit[thread])


class Carried(msgspec.Struct, frozen=True):
    """An order read at an earlier state, and the memories whose runs changed since."""

    order: Order
    touched: frozenset[int] = frozenset()

    def runs(self, rids: Sequence[int]) -> dict[int, Run]:
        """Order.runs() of those of `rids` whose runs are as the order holds them."""
        return self.order.runs([rid for rid in rids if rid not in self.touched])


def read_order(
    conn: apsw.Connection, index: VectorIndex, stopping: threading.Event | None = None
) -> Order | None:
    """The order of the live memories in `conn`'s snapshot, the links from `index`;
    None if `stopping` is set meanwhile."""
    members: list[np.ndarray] = []
    times: list[np.ndarray] = []
    explicit: list[bool] = []
    for named, rids, whens in conn.execute(_ORDER):
        if stopping is not None and stopping.is_set():
            return None
        members.append(np.fromstring(str(rids), dtype=np.int64, sep=","))
        times.append(np.fromstring(str(whens), dtype=np.int64, sep=","))
        explicit.append(bool(named))
    sizes = np.fromiter(map(len, members), np.int64, len(members))
    table = np.zeros(int(sizes.sum()), RUN_ROW)
    if len(members):
        table["member"] = np.concatenate(members)
        table["time"] = np.concatenate(times)
    named = np.asarray(explicit, bool)
    if not link(table, sizes, named, index, stopping):
        return None
    return Order(table, np.cumsum(sizes) - sizes, named)


class Orders:
    """The order for the node's current state: read in the background once the runs
    read from SQL at one state (`note_read`) have cost what reading it costs."""

    def __init__(self, db: Database, index: VectorIndex, fresh: Freshness):
        self._db = db
        self._index = index
        self._fresh = fresh
        self._order: tuple[State, Carried] | None = None
        self._counted: State | None = None  # the state the runs read are counted at
        self._read = 0
        self._size = 0
        self._lock = threading.Lock()
        self._builder: threading.Thread | None = None
        self._stopping = threading.Event()

    def at(self, known: Known) -> Carried | None:
        """The order at `known`'s state, if it has been read at it or carried to it."""
        held = self._order
        if held is None or known.state is None:
            return None
        state, carried = held
        if state == known.state:
            return carried
        if known.moved is None:
            return None
        was, now, touched = known.moved
        if was != state or now != known.state or touched is None:
            return None
        if len(carried.touched) + len(touched) > TOUCHED_MAX:
            return None
        carried = Carried(carried.order, carried.touched | touched)
        self._order = (now, carried)
        return carried

    def note_read(self, conn: apsw.Connection, known: Known, runs: int) -> None:
        """`runs` were read from SQL at `known`'s state; once they cost what the order
        costs, read the order."""
        token = known.state
        with self._lock:
            busy = self._builder is not None or self._stopping.is_set()
            if busy or not runs or token is None or self.at(known) is not None:
                return
            if token != self._counted:
                moved = known.moved
                if moved is None or moved[:2] != (self._counted, token) or moved[2] is None:
                    # not carried over from the state counted: a new count; the highest
                    # rowid: at least the live memories
                    self._read = 0
                    self._size = int(scalar(conn, "SELECT coalesce(max(rid), 0) FROM memories"))
                self._counted = token
            self._read += runs
            if self._read * RATIO < self._size:
                return
            self._builder = threading.Thread(
                target=self._build, name="cis-thread-order", daemon=True
            )
            self._builder.start()

    def _build(self) -> None:
        try:
            with self._db.read() as conn:
                logged = self._fresh.logged
                state = (int(scalar(conn, HISTORY_MARK)), logged)
                order = read_order(conn, self._index, self._stopping)
            # the links are of the vectors the index held throughout, those of `state`
            if order is not None and self._fresh.logged == logged:
                self._order = (state, Carried(order))
        except Exception as exc:  # a background read: whatever fails, runs come from SQL
            log.warning("the thread order was not read: %s: %s", type(exc).__name__, exc)
        finally:
            with self._lock:
                self._builder = None
                self._counted = None  # a failed or stale read is paid for anew

    def wait(self) -> None:
        """Wait for a reading under way (none: return at once)."""
        with self._lock:
            builder = self._builder
        if builder is not None:
            builder.join()

    def close(self) -> None:
        """Stop a reading under way and wait for it."""
        self._stopping.set()
        self.wait()
