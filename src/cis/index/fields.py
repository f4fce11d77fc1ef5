"""Word scores with a memory's thread as a second field (BM25F), in numpy.

A memory's own words are one field; the words of the memories around it in its thread
(same scope, next to it in the order every replica shares, close in time) are another.
A neighbour counts by its distance (within NEAR on either side: 1 + WIDE; up to FAR:
WIDE) times how coherent the stretch between the two is: the mean cosine of consecutive
memories' vectors along it, at least 0; a neighbour whose weight stays under
MIN_WEIGHT lends nothing. So the turn that answers a question gets the question's words
from the turn before it, while notes of unrelated things stored one after another lend
their words to nobody (their consecutive cosines are near 0).

BM25F (Robertson & Zaragoza): a word's frequency in a memory is its own count plus the
weighted counts of its neighbours, its length its own length plus their weighted
lengths, saturated once with FTS5's K1 and B. Divided by the query's full score (the sum
of its words' IDFs), a score says how much of the query a memory and its thread hold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

K1, B = 1.2, 0.75  # FTS5's BM25 parameters
NEAR = 2  # turns on either side that explain each other most (a question and its answer)
FAR = 6  # a stretch of a conversation (one exchange on one subject)
WIDE = 0.2  # a neighbour's weight beyond NEAR, and added to it within NEAR
# a neighbour lending less than this is left out: unrelated notes side by side (random
# consecutive cosines, mean of their positive part about 0.02) lend nothing measurable
# (LoCoMo and both fact sets unchanged at this floor), while leaving them out made a
# made-up-word search at 100k 7% faster; a conversation's stretches (mean cosine 0.5) stay
MIN_WEIGHT = 0.02

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def distance_weight(distance: int) -> float:
    """The field weight of a neighbour `distance` places away (1..FAR), before coherence."""
    return (1.0 if distance <= NEAR else 0.0) + WIDE


def pairs(
    segments: Ints, times: Ints, links: Floats, window_ms: int, timed: npt.NDArray[np.bool_]
) -> tuple[Ints, Ints, Floats]:
    """For memories 0..n-1 laid out run after run (`segments`: each one's run number;
    within a run they are consecutive in their thread), their `times`, and the coherence
    of each with the next (`links`; any value at a run's end): every (memory, neighbour,
    weight) of one run within FAR places of each other, both ways, with a weight above
    MIN_WEIGHT; where `timed` (all of a run or none), also within `window_ms` of each other."""
    n = len(segments)
    t = np.asarray(times, dtype=np.int64)
    coherence = np.concatenate([[0.0], np.cumsum(np.maximum(np.asarray(links, float), 0.0))])
    mine, theirs, weights = [], [], []
    for d in range(1, min(FAR, n - 1) + 1):
        i = np.arange(n - d)
        j = i + d
        w = distance_weight(d) * (coherence[j] - coherence[i]) / d
        near = (np.abs(t[j] - t[i]) <= window_ms) | ~timed[i]
        keep = (segments[i] == segments[j]) & near & (w > MIN_WEIGHT)
        for a, b in ((i, j), (j, i)):
            mine.append(a[keep])
            theirs.append(b[keep])
            weights.append(w[keep])
    if not mine:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return np.concatenate(mine), np.concatenate(theirs), np.concatenate(weights)


def bm25f(
    idf: Floats,
    full: float,
    counts: Floats,
    lengths: Floats,
    around: tuple[Ints, Ints, Floats],
) -> tuple[Floats, Floats]:
    """For memories 0..n-1 with `counts` (n x words: how often each holds each query
    word) and `lengths`, and `around` (memory, neighbour, weight) triples: each one's
    own score and its score with its thread, both over `full`, in [0, 1]."""
    if full <= 0 or not len(lengths):
        zero = np.zeros(len(lengths))
        return zero, zero
    mine, theirs, weight = around
    tf = counts + lent(counts[theirs] * weight[:, None], mine, len(lengths))
    length = lengths + lent(lengths[theirs] * weight, mine, len(lengths))
    own = saturated(counts, lengths, idf, max(1e-9, float(lengths.mean()))) / full
    with_thread = saturated(tf, length, idf, max(1e-9, float(length.mean()))) / full
    return np.minimum(own, 1.0), np.minimum(with_thread, 1.0)


def held(counts: Floats, around: tuple[Ints, Ints, Floats]) -> Ints:
    """For memories 0..n-1 with `counts` (n x words) and `around`: how many of the query's
    words each one holds with its thread (itself or a neighbour that lends it words)."""
    mine, theirs, _ = around  # every triple lends (its weight is above 0)
    has = counts > 0
    found = has | (lent(has[theirs].astype(np.float64), mine, len(counts)) > 0)
    return found.sum(axis=1)  # type: ignore[no-any-return]


def lent(values: Floats, mine: Ints, n: int) -> Floats:
    """The sum of `values` (one row per triple) for each of memories 0..n-1 by `mine`:
    np.add.at, column by column through np.bincount (many times faster)."""
    if values.ndim == 1:
        return np.bincount(mine, weights=values, minlength=n).astype(np.float64)
    out = np.zeros((n, values.shape[1]))
    for column in range(values.shape[1]):
        out[:, column] = np.bincount(mine, weights=values[:, column], minlength=n)
    return out


def saturated(tf: Floats, length: Floats, idf: Floats, typical: float) -> Floats:
    """BM25 of each row of `tf` (n x words) with `length`, against a `typical` length."""
    norm = K1 * (1 - B + B * length / typical)
    return ((idf * tf * (K1 + 1)) / (tf + norm[:, None])).sum(axis=1)  # type: ignore[no-any-return]
