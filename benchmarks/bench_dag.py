"""DAG runs: scheduler overhead on no-op (barrier) tasks with every state change persisted;
8 parallel `sleep 1` tasks against their 1 s critical path; shell tasks in parallel
against the original's way (one `sh -c` after another, in the same run); and the time
from starting `cis dag run` to its first task running.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import emit, temp_dir

from cis import Node

CIS = str(Path(sys.executable).parent / "cis")
LAYERS, WIDTH = 20, 100
SHELL_TASKS = 200
STARTS = 7


def write(path: Path, tasks: list[dict[str, object]], name: str) -> Path:
    path.write_text(json.dumps({"dag": {"name": name, "tasks": tasks}}))
    return path


def barrier_dag(path: Path) -> Path:
    rng = random.Random(1)
    tasks: list[dict[str, object]] = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            deps = (
                []
                if layer == 0
                else sorted({f"n{layer - 1}_{rng.randrange(WIDTH)}" for _ in range(2)})
            )
            tasks.append({"id": f"n{layer}_{i}", "deps": deps})
    return write(path, tasks, "barriers")


def main() -> None:
    work = temp_dir("dag")
    with Node.open(work / "node", background=False) as node:
        flow = barrier_dag(work / "barriers.json")
        began = time.perf_counter()
        run = node.dags.run(flow)
        barrier_s = time.perf_counter() - began
        assert run.status == "succeeded"

        sleeps = write(
            work / "sleeps.json",
            [{"id": f"s{i}", "command": "sleep 1"} for i in range(8)],
            "sleeps",
        )
        began = time.perf_counter()
        assert node.dags.run(sleeps, concurrency=8).status == "succeeded"
        sleeps_s = time.perf_counter() - began

        shell = write(
            work / "shell.json",
            [{"id": f"t{i}", "command": "true"} for i in range(SHELL_TASKS)],
            "shell",
        )
        began = time.perf_counter()
        assert node.dags.run(shell, concurrency=4).status == "succeeded"
        shell_s = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(SHELL_TASKS):
        subprocess.run(["sh", "-c", "true"], check=True)
    sequential_s = time.perf_counter() - began

    env = {**os.environ, "CIS_DATA_DIR": str(work / "node")}
    stamp = work / "stamp"
    first = write(
        work / "first.json",
        [{"id": "stamp", "command": f"date +%s.%N > {stamp}"}],
        "first",
    )
    starts = []
    for _ in range(STARTS):
        began = time.time()
        subprocess.run(
            [CIS, "dag", "run", str(first), "--json"], env=env, check=True, capture_output=True
        )
        starts.append(float(stamp.read_text()) - began)
    nodes = LAYERS * WIDTH
    emit(
        "dag",
        barrier_tasks=nodes,
        scheduler_tasks_per_s=nodes / barrier_s,
        parallel_sleeps=8,
        parallel_sleep_wall_s=sleeps_s,
        parallel_over_critical_path=sleeps_s / 1.0,
        shell_tasks=SHELL_TASKS,
        shell_tasks_per_s_concurrency_4=SHELL_TASKS / shell_s,
        sequential_sh_c_per_s=SHELL_TASKS / sequential_s,
        shell_over_sequential=sequential_s / shell_s,
        cli_start_to_first_task_median_ms=statistics.median(starts) * 1000,
        cli_start_to_first_task_max_ms=max(starts) * 1000,
        note="barrier tasks do nothing: their time is the scheduler's and the two state"
        " writes to SQLite per task; sequential_sh_c is the original CIS's way",
    )


if __name__ == "__main__":
    main()
