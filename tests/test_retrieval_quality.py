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
    result = eval_paraphrase.run()
    assert result["pass"], result["results"]


@pytest.mark.slow
@pytest.mark.skipif(not eval_locomo.DATA.exists(), reason="LoCoMo data (shared/data) absent")
def test_locomo_hybrid_beats_both_baselines() -> None:
    result = eval_locomo.run()
    assert result["pass"], result["overall"]
