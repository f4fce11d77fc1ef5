"""The months and years a query names ("in May", "October 2023"), and whether a
memory's time falls in them (UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_MONTHS = {
    name: number
    for number, name in enumerate(
        "january february march april may june july august september october november"
        " december".split(),
        1,
    )
}
_WORD = re.compile(r"[A-Za-z]+|\d{4}")


class Named:
    """The months and years a query names; empty if none."""

    def __init__(self, query: str):
        words = _WORD.findall(query)
        self.months = {
            _MONTHS[w.lower()]
            for n, w in enumerate(words)
            if w.lower() in _MONTHS and (w.lower() != "may" or (w == "May" and n > 0))
        }  # "may" is a month only as "May" and not the first word ("May I ...")
        self.years = {int(w) for w in words if w.isdigit() and 1900 <= int(w) <= 2199}

    def __bool__(self) -> bool:
        return bool(self.months or self.years)

    def holds(self, ms: int) -> bool:
        """Whether the time `ms` (milliseconds since the epoch) is in what was named."""
        when = datetime.fromtimestamp(ms / 1000, UTC)
        return (not self.months or when.month in self.months) and (
            not self.years or when.year in self.years
        )
