"""Which memories stand next to a memory: same scope, adjacent in storage order, close in
time. Search uses them as context (see cis.index.hybrid)."""

from __future__ import annotations

from collections.abc import Sequence

import apsw

from ..index.hybrid import NEIGHBOUR_WINDOW_MS, NEIGHBOURS_EACH_SIDE

_SIDE = (
    "(SELECT group_concat(rid || ':' || t) FROM (SELECT n.rid AS rid,"
    " coalesce(n.event_at, n.created_at) AS t FROM memories n"
    " WHERE n.scope = c.scope AND n.rid {op} c.rid AND n.deleted = 0"
    " ORDER BY n.rid {order} LIMIT {count}))"
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
