"""Fusion of word and meaning scores, with neighbouring memories as context.

Each candidate's own score is `w * words**2 + (1 - w) * meaning`:
- words: how much of the query's words the memory holds (BM25 over the query's full
  score, in [0, 1]); squared, so a memory sharing one stray word with a question counts
  for little next to one that holds most of it;
- meaning: the cosine of query and memory, clipped to [0, 1].
Then context: memories stored next to each other in one scope and close in time (turns
of one conversation, notes of one session) explain each other, e.g. an answer and the
question it replies to. A candidate's score is its own score plus CONTEXT_WEIGHT times
the best own score of its neighbours, divided by (1 + CONTEXT_WEIGHT) to stay in [0, 1].

The weights were chosen on two evaluations that pull in opposite directions
(benchmarks/eval_locomo.py, where words win, and benchmarks/eval_paraphrase.py, where
meaning wins); see the README for the figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

WORD_WEIGHT = 0.6
WORD_POWER = 2.0
CONTEXT_WEIGHT = 0.5
NEIGHBOURS_EACH_SIDE = 2
NEIGHBOUR_WINDOW_MS = 30 * 60 * 1000


class Scored(msgspec.Struct, frozen=True):
    rid: int
    score: float
    text_score: float | None
    vector_score: float | None
    context_score: float | None


def own_score(words: float | None, meaning: float | None, word_weight: float) -> float:
    m = min(1.0, max(0.0, meaning or 0.0))
    w: float = (words or 0.0) ** WORD_POWER
    return word_weight * w + (1.0 - word_weight) * m


def fuse(
    candidates: Sequence[int],
    words: Mapping[int, float],
    meaning: Mapping[int, float],
    neighbours: Mapping[int, Sequence[int]] | None = None,
    *,
    word_weight: float = WORD_WEIGHT,
    context_weight: float = CONTEXT_WEIGHT,
) -> list[Scored]:
    """Scores for `candidates`, best first. `words` and `meaning` may also cover the
    neighbours (a neighbour missing from them scores 0 on that signal)."""
    neighbours = neighbours or {}
    own: dict[int, float] = {}  # each memory's own score, once, however often it is asked
    for rid in (*candidates, *(n for c in candidates for n in neighbours.get(c, ()))):
        if rid not in own:
            own[rid] = own_score(words.get(rid), meaning.get(rid), word_weight)
    out = []
    for rid in candidates:
        context = max((own[n] for n in neighbours.get(rid, ())), default=None)
        score = (own[rid] + context_weight * (context or 0.0)) / (1.0 + context_weight)
        vector = meaning.get(rid)
        out.append(
            Scored(
                rid,
                score,
                words.get(rid),
                None if vector is None else min(1.0, max(0.0, vector)),
                context,
            )
        )
    out.sort(key=lambda s: (-s.score, s.rid))
    return out


def single(signal: Mapping[int, float], *, words: bool) -> list[Scored]:
    """Scores from one signal alone (the `text` and `vector` search modes), best first."""
    out = [
        Scored(
            rid,
            min(1.0, max(0.0, value)),
            value if words else None,
            None if words else min(1.0, max(0.0, value)),
            None,
        )
        for rid, value in signal.items()
    ]
    out.sort(key=lambda s: (-s.score, s.rid))
    return out
