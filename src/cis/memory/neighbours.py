"""Which memories stand next to a memory: same scope, adjacent in time (event time, else
creation time, then id: an order every replica shares, unlike local row order), and
close in time. Search uses them as context (see cis.index.hybrid)."""

from __future__ import annotations

from collections.abc import Sequence

import apsw

from ..index.hybrid import NEIGHBOUR_WINDOW_MS, NEIGHBOURS_EACH_SIDE

_T = "coalesce({m}.event_at, {m}.created_at)"
_PART = (
    "SELECT * FROM (SELECT n.rid AS rid, " + _T.format(m="n") + " AS t, n.id AS id"
    " FROM memories n WHERE n.scope = c.scope AND n.deleted = 0 AND {where}"
    " ORDER BY " + _T.format(m="n") + " {order}, n.id {order} LIMIT {count})"
)
# the neighbours on one side: those of the same time past its id, then those of a later
# (earlier) time; two ranges of the index memories_scope_time, each a few rows long
_SIDE = (
    "(SELECT group_concat(rid || ':' || t) FROM ("
    + _PART.replace("{where}", _T.format(m="n") + " = " + _T.format(m="c") + " AND n.id {op} c.id")
    + " UNION ALL "
    + _PART.replace("{where}", _T.format(m="n") + " {op} " + _T.format(m="c"))
    + " ORDER BY t {order}, id {order} LIMIT {count}))"
)
_SQL = (
    "SELECT c.rid, coalesce(c.event_at, c.created_at), "
    + _SIDE.format(op="<", order="DESC", count=NEIGHBOURS_EACH_SIDE)
    + ", "
    + _SIDE.format(op=">", order="ASC", count=NEIGHBOURS_EACH_SIDE)
    + " FROM memories c WHERE c.rid IN ({marks})"
)


def neighbours(conn: apsw.Connection, rids: Sequence[int]) -> dict[int, list[int]]:
    """For each rowid, its neighbours within NEIGHBOUR_WINDOW_MS of its own time."""
    if not rids:
        return {}
    out: dict[int, list[int]] = {}
    sql = _SQL.format(marks=",".join("?" * len(rids)))
    for rid, when, before, after in conn.execute(sql, list(rids)):
        near = []
        for side in (before, after):
            for item in str(side or "").split(","):
                if not item:
                    continue
                other, other_when = item.split(":")
                if abs(int(other_when) - int(when)) <= NEIGHBOUR_WINDOW_MS:
                    near.append(int(other))
        out[int(rid)] = near
    return out
