"""Handing the interpreter to other threads during long work.

CPython gives a waiting thread the interpreter lock only if the running one lets it go
for long enough: a thread that drops and retakes it at once (time.sleep(0), a tiny BLAS
or SQLite call) keeps the others waiting for as long as its work lasts (measured: a
10 ms timer came back 60-120 ms late). A real pause, however short, lets them in.

Between such pauses, a thread running Python is asked to let go only after the switch
interval (5 ms by default), and with several threads waiting the one that gets the lock
is not always the one that waited longest: during a bulk import beside the graph mover
and the indexer, a 10 ms timer came back 20-57 ms late at 5 ms, and at most 24 ms late
at 1 ms, with the same import speed and HTTP searches/s.
"""

from __future__ import annotations

import sys
import time

PAUSE_S = 0.0001
SWITCH_S = 0.001


def share_interpreter() -> None:
    """Ask running Python threads to let others in every SWITCH_S at least (a node with
    background threads calls this; a host that set a shorter interval keeps it)."""
    if sys.getswitchinterval() > SWITCH_S:
        sys.setswitchinterval(SWITCH_S)


def hand_over() -> None:
    """Let any thread waiting for the interpreter run before this one goes on."""
    time.sleep(PAUSE_S)
