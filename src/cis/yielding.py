"""Handing the interpreter to other threads during long work.

CPython gives a waiting thread the interpreter lock only if the running one lets it go
for long enough: a thread that drops and retakes it at once (time.sleep(0), a tiny BLAS
or SQLite call) keeps the others waiting for as long as its work lasts (measured: a
10 ms timer came back 60-120 ms late). A real pause, however short, lets them in.
"""

from __future__ import annotations

import time

PAUSE_S = 0.0001


def hand_over() -> None:
    """Let any thread waiting for the interpreter run before this one goes on."""
    time.sleep(PAUSE_S)
