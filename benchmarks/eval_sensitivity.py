"""How much retrieval moves when each ranking parameter is moved 20% either way (the count
of words by one): LoCoMo recall@10 (overall and multi-hop) and hit@1 on the paraphrase
and sitting sets, one JSON line. A method whose figures fall apart under that is fitted,
not found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import eval_locomo
import eval_paraphrase
from common import emit, temp_dir

from cis import Node
from cis.index import centred, fields, hybrid
from cis.memory import context, search

DATA = Path(__file__).parent / "data"
PARAMETERS = {
    "MEANING": hybrid,
    "TRUSTED": hybrid,
    "WEAK_WORDS": hybrid,
    "TIME": hybrid,
    "WEAK_HELD": hybrid,  # a count of words: moved by one either way, not by 20%
    "WIDE": fields,
    "MIN_WEIGHT": fields,
    "EXPLICIT": context,
    "NEIGHBOURHOOD": centred,  # a count of memories, but moved by 20% too
    "SHRINK": centred,
    "CANDIDATES": search,  # each signal's pool, a count of memories moved by 20%
}
BY_ONE = {"WEAK_HELD"}


def _figures(
    locomo: Node, questions: list[eval_locomo.Question], sets: dict[str, Any]
) -> dict[str, float]:
    for node in (locomo, *(n for n, _ in sets.values())):
        node.memory.cache.clear()  # results cached under the other setting
    report = eval_locomo.recall(locomo, questions, ("hybrid",))["hybrid"]
    out = {
        "locomo@10": report["all"]["recall@10"],
        "multi_hop@10": report["multi_hop"]["recall@10"],
    }
    for name, (node, pairs) in sets.items():
        out[f"{name}_hit@1"] = eval_paraphrase.score(node, pairs, ("hybrid",))["hybrid"]["hit@1"]
    return out


def main() -> None:
    pairs = [json.loads(line) for line in (DATA / "paraphrase.jsonl").read_text().splitlines()]
    distractors = (DATA / "distractors.txt").read_text().splitlines()
    sitting = [json.loads(line) for line in (DATA / "sitting.jsonl").read_text().splitlines()]
    with (
        Node.open(temp_dir("sens-locomo")) as locomo,
        Node.open(temp_dir("sens-para")) as para,
        Node.open(temp_dir("sens-sitting")) as sat,
    ):
        questions = eval_locomo.load(locomo)
        eval_paraphrase.batch(para, [p["fact"] for p in pairs] + distractors)
        eval_paraphrase.one_by_one(sat, [p["fact"] for p in sitting])
        for node in (para, sat):
            node.memory.flush()
        sets = {"paraphrase": (para, pairs), "sitting": (sat, sitting)}
        chosen = _figures(locomo, questions, sets)
        moved: dict[str, Any] = {}
        for name, module in PARAMETERS.items():
            value = getattr(module, name)
            moved[name] = {"value": value}
            steps = (
                {"-1": value - 1, "+1": value + 1}
                if name in BY_ONE
                else {"x0.8": type(value)(value * 0.8), "x1.2": type(value)(value * 1.2)}
            )
            for key, step in steps.items():
                setattr(module, name, step)
                try:
                    moved[name][key] = _figures(locomo, questions, sets)
                finally:
                    setattr(module, name, value)
    emit("retrieval_sensitivity", chosen=chosen, moved=moved)


if __name__ == "__main__":
    main()
