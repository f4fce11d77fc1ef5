"""Retrieval quality stays where the evaluations put it (benchmarks/eval_*.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import eval_locomo  # noqa: E402
import eval_paraphrase  # noqa: E402


def test_paraphrased_questions_find_short_facts() -> None:
    """Hybrid finds at least what meaning alone finds, at hit@1 and hit@5, on the
    paraphrase set (there hit@1 >= 0.92 and hit@5 >= 0.98) and on the sitting set
    (independent facts stored one after another), and there no wrong first hit is there
    by its thread's words."""
    result = eval_paraphrase.run()
    assert result["paraphrase"]["pass"], result["paraphrase"]
    assert result["sitting"]["pass"], result["sitting"]
    assert result["sitting"]["results"]["hybrid"]["lifted_by_thread"] == 0, result["sitting"]


@pytest.mark.slow
@pytest.mark.skipif(not eval_locomo.DATA.exists(), reason="LoCoMo data (shared/data) absent")
def test_locomo_hybrid_beats_both_baselines() -> None:
    result = eval_locomo.run()
    assert result["pass"], result["overall"]
