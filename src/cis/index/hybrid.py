"""Fusion of word (BM25) and meaning (cosine) scores into one score in [0, 1]."""

from __future__ import annotations

import msgspec

DEFAULT_TEXT_WEIGHT = 0.5


class Scored(msgspec.Struct, frozen=True):
    rid: int
    score: float
    text_score: float | None
    vector_score: float | None


def fuse(
    text_hits: list[tuple[int, float]],
    similarities: dict[int, float],
    *,
    text_weight: float = DEFAULT_TEXT_WEIGHT,
) -> list[Scored]:
    """Weighted sum of BM25 relative to the best text hit and cosine clipped to [0, 1].

    `similarities` holds the cosine of every candidate that has a vector (text hits
    included), so a memory found by words alone still gets its meaning score.
    """
    best = max((s for _, s in text_hits), default=0.0)
    text_scores = {rid: (s / best if best > 0 else 0.0) for rid, s in text_hits}
    out = []
    for rid in text_scores.keys() | similarities.keys():
        t = text_scores.get(rid)
        sim = similarities.get(rid)
        v = None if sim is None else min(1.0, max(0.0, sim))
        score = text_weight * (t or 0.0) + (1.0 - text_weight) * (v or 0.0)
        out.append(Scored(rid, score, t, v))
    out.sort(key=lambda s: (-s.score, s.rid))
    return out
