"""`cis dag` end to end: SIGKILL of the runner then resume, cancel from another process,
a detached run followed with status and logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import CIS, CliRunner, gone

CHAIN = """\
[dag]
name = "steps"
{tasks}
"""


def marking_workflow(tmp_path: Path, marks: Path, held: int) -> Path:
    """Six tasks in three waves; each appends its id to `marks` when it starts and when
    it completes. The tasks of wave `held` wait for the file `release` to appear."""
    release = tmp_path / "release"
    tasks = []
    for wave in range(3):
        for lane in range(2):
            tid = f"w{wave}l{lane}"
            deps = [f"w{wave - 1}l{x}" for x in range(2)] if wave else []
            hold = f"while [ ! -e {release} ]; do sleep 0.05; done; " if wave == held else ""
            tasks.append(
                f'[[dag.tasks]]\nid = "{tid}"\ndeps = {json.dumps(deps)}\n'
                f'command = "echo start-{tid} >> {marks}; {hold}echo {tid} >> {marks}"\n'
            )
    path = tmp_path / "steps.toml"
    path.write_text(CHAIN.format(tasks="\n".join(tasks)))
    return path


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Wait for an event (a file, a row), not for a time; fail naming it if it never comes."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.02)


def marked(marks: Path) -> list[str]:
    return marks.read_text().split() if marks.exists() else []


@pytest.mark.parametrize("held", [0, 1, 2])
def test_sigkill_then_resume_equals_an_uninterrupted_run(
    cli: CliRunner, data_dir: Path, tmp_path: Path, held: int
) -> None:
    """The runner is killed while the tasks of one wave run (they wait for a file that
    appears only later): a resume then ends as an uninterrupted run would."""
    cli("init", check=True)
    marks = tmp_path / "marks"
    flow = marking_workflow(tmp_path, marks, held)
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir)}
    runner = subprocess.Popen([CIS, "dag", "run", str(flow), "--json"], env=env)
    started = {f"start-w{held}l0", f"start-w{held}l1"}
    wait_for(lambda: started <= set(marked(marks)), f"wave {held} to start")
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    status = json.loads(cli("dag", "status", "--json", check=True).stdout)
    assert status["status"] == "interrupted", status
    recorded = [t["task_id"] for t in status["tasks"] if t["status"] == "succeeded"]
    assert sorted(recorded) == sorted(f"w{w}l{x}" for w in range(held) for x in range(2))
    resumer = subprocess.Popen(
        [CIS, "dag", "resume", status["id"], "--json"], env=env, stdout=subprocess.PIPE
    )
    wait_for(lambda: marked(marks).count(f"start-w{held}l0") == 2, "the wave to start again")
    wait_for(lambda: marked(marks).count(f"start-w{held}l1") == 2, "the wave to start again")
    (tmp_path / "release").touch()  # the killed runner's tasks, had they lived, would end now
    out, _ = resumer.communicate(timeout=60)
    assert resumer.returncode == 0
    final = json.loads(out)
    assert final["status"] == "succeeded"
    assert {t["status"] for t in final["tasks"]} == {"succeeded"}
    done = [m for m in marked(marks) if not m.startswith("start-")]
    # every task completed once: those recorded before the kill did not run again, and
    # those cut short by it (they never finished) ran again from the start
    assert sorted(done) == sorted(t["task_id"] for t in final["tasks"])


DAEMONS = """#!/bin/sh
# a setsid daemon that double-forks (new session, reparented), and a plain double fork
setsid sh -c '(sleep 300 & echo $! >> "$1") &' sh "$PIDS" < /dev/null > /dev/null 2>&1
( (sleep 300 & echo $! >> "$PIDS") & ) < /dev/null > /dev/null 2>&1
while [ "$(wc -l < "$PIDS")" -lt 2 ]; do sleep 0.02; done
echo up >> "$MARKS"
exec sleep 300
"""


def daemon_workflow(tmp_path: Path) -> tuple[Path, Path, Path]:
    pids, marks = tmp_path / "pids", tmp_path / "marks"
    script = tmp_path / "daemons.sh"
    script.write_text(DAEMONS)
    script.chmod(0o755)
    flow = tmp_path / "daemons.toml"
    flow.write_text(
        f'[dag]\nname = "daemons"\n[[dag.tasks]]\nid = "d"\ncommand = "{script}"\n'
        f'env = {{ PIDS = "{pids}", MARKS = "{marks}" }}\n'
    )
    return flow, pids, marks


def test_cancel_and_resume_leave_no_setsid_or_double_forked_daemon(
    cli: CliRunner, data_dir: Path, tmp_path: Path
) -> None:
    """A task starts a setsid daemon and a double-forked one (both reparented, both out
    of its process tree); a cancel kills them, and so does a resume after a SIGKILL."""
    cli("init", check=True)
    flow, pids, marks = daemon_workflow(tmp_path)
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir)}
    for cycle in range(3):
        pids.unlink(missing_ok=True)
        marks.unlink(missing_ok=True)
        runner = subprocess.Popen(
            [CIS, "dag", "run", str(flow)], env=env, stdout=subprocess.DEVNULL
        )
        wait_for(lambda: len(marked(pids)) == 2 and bool(marked(marks)), "both daemons")
        daemons = [int(p) for p in marked(pids)]
        run_id = json.loads(cli("dag", "status", "--json", check=True).stdout)["id"]
        if cycle % 2 == 0:
            cli("dag", "cancel", run_id, check=True)
            runner.wait(timeout=30)
        else:  # the runner dies; its leftovers are found on resume
            runner.send_signal(signal.SIGKILL)
            runner.wait()
            assert set(gone(daemons, timeout=0.5)) == set(daemons)  # they outlived it
            finisher = subprocess.Popen([CIS, "dag", "resume", run_id], env=env)
            wait_for(lambda: len(marked(pids)) == 4, "the resumed task's own daemons")
            assert gone(daemons) == []  # the old ones were swept before the task ran again
            daemons = [int(p) for p in marked(pids)[2:]]
            cli("dag", "cancel", run_id, check=True)
            finisher.wait(timeout=30)
        assert gone(daemons) == [], f"cycle {cycle}: daemons left"


def test_cancel_from_another_process_leaves_no_process(
    cli: CliRunner, data_dir: Path, tmp_path: Path
) -> None:
    cli("init", check=True)
    pids = tmp_path / "pids"
    flow = tmp_path / "long.yaml"
    flow.write_text(
        "dag:\n  name: long\n  tasks:\n"
        f"    - id: a\n      command: 'sleep 60 & echo $! >> {pids}; wait'\n"
        f"    - id: b\n      command: 'sleep 60 & echo $! >> {pids}; wait'\n"
        "    - id: c\n      command: 'echo never'\n      deps: [a]\n"
    )
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir)}
    runner = subprocess.Popen(
        [CIS, "dag", "run", str(flow)], env=env, stdout=subprocess.PIPE, text=True
    )
    wait_for(lambda: len(marked(pids)) == 2, "both tasks' children")
    run_id = json.loads(cli("dag", "status", "--json", check=True).stdout)["id"]
    assert cli("dag", "cancel", run_id, check=True).stdout.startswith("cancelling")
    out, _ = runner.communicate(timeout=20)
    assert runner.returncode == 1
    assert "cancelled" in out
    assert gone([int(p) for p in marked(pids)]) == []
    again = cli("dag", "cancel", run_id)
    assert again.returncode == 2 and "not running" in again.stderr


def test_detached_run_with_status_and_logs(cli: CliRunner, tmp_path: Path) -> None:
    cli("init", check=True)
    flow = tmp_path / "hello.json"
    flow.write_text(
        json.dumps(
            {
                "dag": {
                    "name": "hello",
                    "tasks": [
                        {"id": "greet", "command": "echo hello {{ inputs.who }}"},
                        {"id": "loud", "command": ["sh", "-c", "echo LOUD >&2"], "deps": ["greet"]},
                    ],
                }
            }
        )
    )
    run_id = cli("dag", "run", str(flow), "--input", "who=Kim", "--detach", check=True).stdout
    run_id = run_id.strip()

    def finished() -> bool:
        state = json.loads(cli("dag", "status", run_id, "--json", check=True).stdout)
        return state["status"] not in ("pending", "running")

    wait_for(finished, "the detached run to end")
    status = json.loads(cli("dag", "status", run_id, "--json", check=True).stdout)
    assert status["status"] == "succeeded", status
    logs = cli("dag", "logs", run_id, "-f", check=True).stdout
    assert "[greet] hello Kim" in logs and "[loud] LOUD" in logs
    assert cli("dag", "logs", run_id, "loud", check=True).stdout == "LOUD\n"
    listed = cli("dag", "list", check=True).stdout
    assert run_id in listed and "succeeded" in listed
    bad = tmp_path / "bad.toml"
    bad.write_text('[dag]\nname = "x"\n[[dag.tasks]]\nid = "a"\ncommand = "true"\ndeps = ["b"]\n')
    refused = cli("dag", "run", str(bad))
    assert refused.returncode == 2 and "bad.toml:6: task 'a': unknown dep 'b'" in refused.stderr


def test_the_example_workflow_runs_on_a_bare_machine(cli: CliRunner, tmp_path: Path) -> None:
    cli("init", check=True)
    example = Path(__file__).parents[2] / "examples" / "workflows" / "tree-report.toml"
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("x" * 5000)
    (folder / "b.txt").write_text("y")
    refused = cli("dag", "run", str(example))
    assert refused.returncode == 2 and "inputs.dir" in refused.stderr
    done = cli("dag", "run", str(example), "--input", f"dir={folder}", "--json", check=True)
    run = json.loads(done.stdout)
    report = next(t for t in run["tasks"] if t["task_id"] == "report")
    assert report["output"].startswith("2 files,") and "a.txt" in report["output"]
