"""Time: wall-clock milliseconds, and the hybrid logical clock that orders changes.

An HLC stamp is one integer: 48 bits of wall milliseconds, then a 16-bit counter. Paired
with the origin's DID it orders every change in the cluster totally. A node keeps its
last stamp in the database, so its clock never goes backwards across restarts or
between the processes that share the node.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import InvalidInput

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_AHEAD_MS = 5 * 60 * 1000  # a remote clock further ahead than this is refused


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (UTC)."""
    return time.time_ns() // 1_000_000


def wall_ms(stamp: int) -> int:
    """The wall milliseconds of an HLC stamp."""
    return stamp >> COUNTER_BITS


class ClockAhead(InvalidInput):
    """A remote stamp lies too far in this node's future to be adopted."""


class Clock:
    """The HLC rules, over a wall clock that can be injected (tests fix or skew it)."""

    def __init__(self, wall: Callable[[], int] = now_ms):
        self.wall = wall

    def next(self, last: int) -> int:
        """The stamp of a local change after `last`: wall time if it moved on, else
        `last` plus one (the counter; a full counter carries into the milliseconds)."""
        ms = self.wall()
        if ms > wall_ms(last):
            return ms << COUNTER_BITS
        return last + 1

    def receive(self, last: int, remote: int) -> int:
        """The last stamp after seeing `remote`; ClockAhead if it is too far ahead."""
        ahead = wall_ms(remote) - self.wall()
        if ahead > MAX_AHEAD_MS:
            raise ClockAhead(
                f"a clock {ahead / 1000:.0f} s ahead of this node's (at most"
                f" {MAX_AHEAD_MS // 1000} s is accepted); check the sender's clock"
            )
        return max(last, remote)
