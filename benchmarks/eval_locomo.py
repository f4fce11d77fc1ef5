"""Retrieval quality on LoCoMo (first 5 conversations): evidence recall@5/10/25 by category,
for words only (BM25), meaning only (MiniLM vectors) and hybrid search, in one run.

Data: ../shared/data/locomo-dev.json (or CIS_LOCOMO), Maharana et al., ACL 2024,
CC BY-NC 4.0; used for evaluation only, nothing of it ships in src/.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import emit, temp_dir

from cis import Node

KS = (5, 10, 25)
MODES = ("text", "vector", "hybrid")
CATEGORIES = {1: "multi_hop", 2: "temporal", 3: "open_domain", 4: "single_hop", 5: "adversarial"}
DATA = Path(
    os.environ.get(
        "CIS_LOCOMO", Path(__file__).resolve().parents[2] / "shared/data/locomo-dev.json"
    )
)


def session_time(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' as an aware datetime (UTC)."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def turns(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    sessions = sorted(
        (int(k.split("_")[1]), k)
        for k in conversation
        if re.fullmatch(r"session_\d+", k) and conversation[k]
    )
    for _, key in sessions:
        when = session_time(conversation[f"{key}_date_time"])
        for turn in conversation[key]:
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [image: {turn['blip_caption']}]"
            out.append({"text": text, "dia_id": turn["dia_id"], "event_at": when, "thread": key})
    return out


def clean_evidence(evidence: list[str], known: set[str]) -> set[str]:
    """Split on ';' and spaces, read D:11:26 as D11:26 and D30:05 as D30:5, keep known ids."""
    ids = set()
    for entry in evidence:
        for part in re.split(r"[;\s]+", entry):
            match = re.fullmatch(r"D:?(\d+):0*(\d+)", part.strip())
            if match:
                dia = f"D{int(match.group(1))}:{int(match.group(2))}"
                if dia in known:
                    ids.add(dia)
    return ids


Question = tuple[str, str, int, set[str]]  # scope, question, category, evidence ids


def load(node: Node, *, threads: bool = True) -> list[Question]:
    """Store each conversation in a scope of its own, each session of it a named thread
    (unless not `threads`: then search infers them); its questions with evidence."""
    samples = json.loads(DATA.read_text())
    questions = []
    for sample in samples:
        scope = f"project/{sample['sample_id']}"
        rows = turns(sample["conversation"])
        node.memory.add_many(
            {
                "text": r["text"],
                "scope": scope,
                "event_at": r["event_at"],
                "thread": r["thread"] if threads else None,
                "metadata": {"dia_id": r["dia_id"]},
            }
            for r in rows
        )
        known = {r["dia_id"] for r in rows}
        for qa in sample["qa"]:
            evidence = clean_evidence(qa.get("evidence", []), known)
            if evidence:
                questions.append((scope, qa["question"], qa["category"], evidence))
    node.memory.flush()
    return questions


def recall(
    node: Node, questions: list[Question], modes: tuple[str, ...] = MODES
) -> dict[str, dict[str, dict[str, float]]]:
    """Evidence recall@k per mode, overall ("all") and per category."""
    hits: dict[str, dict[str, dict[int, list[float]]]] = {
        m: defaultdict(lambda: defaultdict(list)) for m in modes
    }
    for scope, question, category, evidence in questions:
        for mode in modes:
            found = node.memory.search(question, scope=scope, limit=max(KS), mode=mode)
            ranked = [h.memory.metadata["dia_id"] for h in found]
            for k in KS:
                share = len(evidence & set(ranked[:k])) / len(evidence)
                hits[mode]["all"][k].append(share)
                hits[mode][CATEGORIES[category]][k].append(share)
    return {
        mode: {
            group: {f"recall@{k}": round(sum(v) / len(v), 4) for k, v in by_k.items()}
            for group, by_k in sorted(hits[mode].items())
        }
        for mode in modes
    }


def run() -> dict[str, Any]:
    """The figures, and whether they pass: hybrid recall@10 at least 0.80 overall and
    0.45 on multi-hop questions, and at least 0.05 above the better of words alone and
    meaning alone; with each session a named thread, and with threads inferred
    (`hybrid_inferred`: the same turns stored without thread names)."""
    with Node.open(temp_dir("locomo")) as node:
        questions = load(node)
        report = recall(node, questions)
    with Node.open(temp_dir("locomo-inferred")) as node:
        report["hybrid_inferred"] = recall(node, load(node, threads=False), ("hybrid",))["hybrid"]
    overall = {m: report[m]["all"] for m in report}
    margin = overall["hybrid"]["recall@10"] - max(
        overall["text"]["recall@10"], overall["vector"]["recall@10"]
    )
    passed = margin >= 0.05 and all(
        report[m]["all"]["recall@10"] >= 0.80 and report[m]["multi_hop"]["recall@10"] >= 0.45
        for m in ("hybrid", "hybrid_inferred")
    )
    return {
        "questions": len(questions),
        "overall": overall,
        "hybrid_minus_best_baseline_at_10": round(margin, 4),
        "by_category": report,
        "reference": "LoCoMo paper DRAGON turn-level: @5 0.567 @10 0.662 @25 0.767 (full set)",
        "pass": passed,
    }


def main() -> None:
    if not DATA.exists():
        sys.exit(f"LoCoMo data not found at {DATA}; set CIS_LOCOMO")
    emit("locomo_retrieval", **run())


if __name__ == "__main__":
    main()
