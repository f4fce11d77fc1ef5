"""Fusion of a search's signals into one score per candidate.

The signals of a candidate (cis.memory.search gathers them):
- words: how much of the query its words and its thread's hold (BM25F over the query's
  full score, in [0, 1]; cis.index.fields);
- meaning: the cosine of query and memory, from the centre of the query's neighbourhood
  (cis.index.centred);
- time: whether its time falls in a month or year the query names.

Words and meaning are standardised over the candidate pool (z-scores: each signal's
spread in this search is its unit) and added, meaning weighed MEANING against words' 1.
Then a gate: when the memory that holds most of the query's words holds less than
TRUSTED of them (by count), the words are weak evidence (a question asked in other words, where a
memory shares one stray word with it) and count on a fixed scale instead, squared,
WEAK_WORDS x words², so that stray word weighs next to nothing; and they count only
for a memory that holds, with its thread, at least WEAK_HELD different query words: one
shared word alone ("the previous router" against "the router sits in the cupboard") is
what two unrelated notes have in common by chance. A memory of the month
or year the query names gets TIME more. The sum is mapped into (0, 1) by the logistic
function: a score compares hits of one search, it is not a probability.

Every parameter was chosen on LoCoMo's dev conversations and the paraphrase set, with
a reason each; the README shows how recall moves when each is moved 20% either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import msgspec
import numpy as np

MEANING = 0.7  # meaning's weight next to words': on conversations words carry more
TRUSTED = 0.6  # words are strong evidence when one memory holds most of the query's words
WEAK_WORDS = 10.0  # weak words' scale: 1 of 5 words held (0.2) adds 0.4, a whole match 10
TIME = 1.0  # a memory of the month/year the query names: one standard deviation more
WEAK_HELD = 2  # weak words count for a memory holding this many query words (thread too)


class Scored(msgspec.Struct, frozen=True):
    rid: int
    score: float
    text_score: float | None
    vector_score: float | None
    context_score: float | None
    time_score: float | None = None


def strong(held: int, asked: int) -> bool:
    """Whether words are strong evidence: the best word hit holds `held` of the query's
    `asked` words, at least TRUSTED of them."""
    return asked > 0 and held / asked >= TRUSTED


def _z(values: np.ndarray) -> np.ndarray:
    spread = float(values.std())
    return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def fuse(
    candidates: Sequence[int],
    own: Mapping[int, float],
    words: Mapping[int, float],
    meaning: Mapping[int, float],
    *,
    trusted: bool,
    timely: frozenset[int] = frozenset(),
    held: Mapping[int, int] | None = None,
) -> list[Scored]:
    """Scores for `candidates`, best first: `own` and `words` their word scores without
    and with their thread, `meaning` their cosines, `trusted` whether the words are
    strong evidence in this search, `timely` those of the time the query names, `held`
    how many of the query's words each holds with its thread (None: enough, all)."""
    if not candidates:
        return []
    if not trusted and held is not None:  # a stray shared word is no evidence
        words = {r: v for r, v in words.items() if held.get(r, 0) >= WEAK_HELD}
        own = {r: v for r, v in own.items() if r in words}
    w = np.array([words.get(r, 0.0) for r in candidates])
    m = np.array([meaning.get(r, 0.0) for r in candidates])
    fused = (_z(w) if trusted else WEAK_WORDS * w**2) + MEANING * _z(m)
    if timely:
        fused += TIME * np.array([r in timely for r in candidates], dtype=float)
    out = []
    for rid, value in zip(candidates, fused.tolist(), strict=True):
        vector = meaning.get(rid)
        out.append(
            Scored(
                rid,
                1.0 / (1.0 + math.exp(-value)),
                own.get(rid),
                None if vector is None else min(1.0, max(0.0, vector)),
                words.get(rid),
                1.0 if rid in timely else None,
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
