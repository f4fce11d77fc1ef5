"""The executor on real processes: parallelism, deps, retries, time-outs, failure policy,
cancellation without orphans, and agent tasks with memory in and out."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cis import Node
from cis.errors import InvalidInput

from .conftest import gone


def workflow(tmp_path: Path, body: str, name: str = "w") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[dag]\nname = "{name}"\n{body}')
    return path


def task(tid: str, command: str, deps: tuple[str, ...] = (), **extra: Any) -> str:
    lines = [f'[[dag.tasks]]\nid = "{tid}"', f"command = {json.dumps(command)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in {"deps": list(deps), **extra}.items()]
    return "\n".join(lines) + "\n"


def events(node: Node, path: Path, **options: Any) -> tuple[Any, list[tuple[float, str, str]]]:
    seen: list[tuple[float, str, str]] = []
    run = node.dags.run(
        path, on_event=lambda t, s, d: seen.append((time.monotonic(), t, s)), **options
    )
    return run, seen


def test_independent_tasks_run_in_parallel_and_deps_wait(node: Node, tmp_path: Path) -> None:
    body = task("a", "sleep 0.6") + task("b", "sleep 0.6") + task("c", "echo done", ("a", "b"))
    started = time.monotonic()
    run, seen = events(node, workflow(tmp_path, body))
    assert run.status == "succeeded"
    assert time.monotonic() - started < 1.1  # not 1.2 s one after the other
    first = {t: at for at, t, s in seen if s == "running"}
    done = {t: at for at, t, s in seen if s == "succeeded"}
    assert first["c"] >= max(done["a"], done["b"])


def test_concurrency_cap(node: Node, tmp_path: Path) -> None:
    body = "".join(task(f"t{i}", "sleep 0.3") for i in range(4))
    started = time.monotonic()
    run, _ = events(node, workflow(tmp_path, body), concurrency=2)
    assert run.status == "succeeded"
    assert time.monotonic() - started >= 0.6


def test_retries_then_success(node: Node, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    flaky = f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]"
    body = task("flaky", flaky, retry=3, retry_delay_secs=0.01)
    run, seen = events(node, workflow(tmp_path, body))
    assert run.status == "succeeded"
    assert run.tasks[0].attempts == 3
    assert [s for _, t, s in seen].count("retrying") == 2


def test_failure_skips_downstream_and_policy_decides(node: Node, tmp_path: Path) -> None:
    body = (
        task("bad", "echo broken; exit 3")
        + task("after", "echo never", ("bad",))
        + task("later", "echo never", ("after",))
        + task("other", "echo fine")
    )
    run, _ = events(node, workflow(tmp_path, body))
    states = {t.task_id: (t.status, t.exit_code) for t in run.tasks}
    assert run.status == "failed"
    assert states == {
        "bad": ("failed", 3),
        "after": ("skipped", None),
        "later": ("skipped", None),
        "other": ("succeeded", 0),
    }
    lenient = workflow(tmp_path, 'policy = "allow_failures"\n' + body, name="lenient")
    assert events(node, lenient)[0].status == "succeeded"


def test_timeout_kills_the_whole_tree(node: Node, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = task("slow", f"sleep 30 & echo $! > {pids}; sleep 30", timeout_secs=0.5)
    run, _ = events(node, workflow(tmp_path, body))
    assert run.status == "failed" and "timed out" in (run.tasks[0].error or "")
    assert gone([int(pids.read_text())]) == []


def test_outputs_flow_downstream_quoted(node: Node, tmp_path: Path) -> None:
    body = task("a", 'printf "it\'s; rm -rf x"') + task(
        "b", "echo got {{ tasks.a.output }}", ("a",)
    )
    run, _ = events(node, workflow(tmp_path, body))
    assert run.tasks[1].output == "got it's; rm -rf x\n"


def test_cancel_kills_every_process_even_one_ignoring_sigterm(node: Node, tmp_path: Path) -> None:
    stubborn = tmp_path / "stubborn.sh"
    stubborn.write_text(f"#!/bin/sh\ntrap '' TERM\nsleep 60 &\necho $! >> {tmp_path}/pids\nwait\n")
    stubborn.chmod(stubborn.stat().st_mode | stat.S_IEXEC)
    body = task("one", str(stubborn)) + task("two", f"sleep 60 & echo $! >> {tmp_path}/pids; wait")
    run_id = node.dags.start(workflow(tmp_path, body))
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(node.dags.execute(run_id)))
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (tmp_path / "pids").exists() and len((tmp_path / "pids").read_text().split()) == 2:
            break
        time.sleep(0.05)
    spawned = [int(p) for p in (tmp_path / "pids").read_text().split()]
    before = [c.pid for c in psutil.Process().children(recursive=True)]
    node.dags.cancel(run_id)
    thread.join(20)
    assert result == ["cancelled"]
    assert gone([*spawned, *before]) == []
    run = node.dags.status(run_id)
    assert {t.status for t in run.tasks} == {"cancelled"}


AGENT = """#!/bin/sh
# a stand-in for the claude CLI: `claude -p` reads its prompt on stdin, prints an answer
[ "$1" = "-p" ] && [ "$#" = 1 ] || exit 64
prompt=$(cat)
case "$prompt" in
  *ratelimit*) echo "Error: 429 rate limit exceeded"; exit 1 ;;
esac
printf 'prompt was: %s' "$prompt" > "$AGENT_LOG"
echo "The answer is 42"
"""


@pytest.fixture
def agent_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "claude"
    script.write_text(AGENT)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    log = tmp_path / "agent.log"
    monkeypatch.setenv("AGENT_LOG", str(log))
    return log


def test_agent_gets_memories_and_its_answer_is_remembered(
    node: Node, tmp_path: Path, agent_on_path: Path
) -> None:
    node.memory.add("The meaning of life question is asked by Deep Thought")
    body = (
        '[[dag.tasks]]\nid = "ask"\nagent = "claude"\nprompt = "What does Deep Thought answer?"\n'
    )
    run, _ = events(node, workflow(tmp_path, body, name="ask"))
    assert run.status == "succeeded"
    seen_prompt = agent_on_path.read_text()
    assert "Relevant memories" in seen_prompt and "Deep Thought" in seen_prompt
    results = node.memory.list(category="result")
    assert [m.text for m in results] == ["The answer is 42"]
    assert "dag:ask" in results[0].tags


def test_rate_limited_agent_is_retryable_on_resume(
    node: Node, tmp_path: Path, agent_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = '[[dag.tasks]]\nid = "ask"\nagent = "claude"\nprompt = "{{ inputs.q }}"\n' + task(
        "broken", "exit 2"
    )
    run, _ = events(node, workflow(tmp_path, body), inputs={"q": "ratelimit me"})
    states = {t.task_id: t for t in run.tasks}
    assert states["ask"].status == "failed" and states["ask"].retryable
    assert states["broken"].status == "failed" and not states["broken"].retryable
    with node.db.write() as conn:  # the provider is back: answer normally on resume
        conn.execute('UPDATE dag_runs SET inputs = \'{"q": "fine now"}\' WHERE id = ?', (run.id,))
    resumed = node.dags.resume(run.id)
    states = {t.task_id: t for t in resumed.tasks}
    assert states["ask"].status == "succeeded"
    assert states["broken"].status == "failed"  # it ran again, and failed again
    assert resumed.status == "failed"


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.lists(st.integers(0, 10), max_size=3), st.booleans()), min_size=1, max_size=7
    )
)
def test_random_dags_keep_their_order(node: Node, tmp_path: Path, shape: list[Any]) -> None:
    """No task starts before its deps succeed; each succeeds at most once; exactly the
    tasks downstream of a failure are skipped."""
    body, deps_of, fails = "", {}, set()
    for i, (picks, fail) in enumerate(shape):
        deps = tuple(sorted({f"t{p % i}" for p in picks})) if i else ()
        deps_of[f"t{i}"] = deps
        if fail:
            fails.add(f"t{i}")
        body += task(f"t{i}", "exit 1" if fail else "true", deps)
    run, seen = events(node, workflow(tmp_path, body, name=f"r{len(shape)}"))
    finished = {t for _, t, s in seen if s == "succeeded"}
    assert len([1 for _, t, s in seen if s == "succeeded"]) == len(finished)
    order = {(t, s): at for at, t, s in seen}
    for t, deps in deps_of.items():
        if (t, "running") in order:
            assert all(order[(d, "succeeded")] <= order[(t, "running")] for d in deps)
    doomed: set[str] = set()
    for t, deps in deps_of.items():  # tasks are in topological order
        if any(d in fails or d in doomed for d in deps):
            doomed.add(t)
    states = {t.task_id: t.status for t in run.tasks}
    assert {t for t, s in states.items() if s == "skipped"} == doomed
    assert {t for t, s in states.items() if s == "failed"} == fails - doomed


def test_skill_tasks_run_in_the_sandbox(node: Node, tmp_path: Path) -> None:
    root = Path(__file__).parents[1]
    node.skills.install(root / "examples" / "skills" / "wordcount")
    node.skills.install(root / "tests" / "fixtures" / "skills" / "torture")
    body = (
        task("say", "echo one two three")
        + '[[dag.tasks]]\nid = "count"\nskill = "wordcount"\ndeps = ["say"]\n'
        + 'input = { text = "{{ tasks.say.output }}" }\n'
        + '[[dag.tasks]]\nid = "hang"\nskill = "torture"\ninput = { mode = "loop" }\n'
    )
    run, _ = events(node, workflow(tmp_path, body))
    states = {t.task_id: t for t in run.tasks}
    assert json.loads(states["count"].output or "") == {"words": 3, "characters": 13}
    assert states["hang"].status == "failed" and "timed out" in (states["hang"].error or "")


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.lists(
        st.tuples(st.lists(st.integers(0, 10), max_size=2), st.booleans()), min_size=2, max_size=6
    ),
    stop_after=st.floats(0.0, 0.25),
)
def test_a_resumed_run_ends_as_an_uninterrupted_one(
    node: Node, tmp_path: Path, shape: list[Any], stop_after: float
) -> None:
    body = ""
    for i, (picks, fail) in enumerate(shape):
        deps = tuple(sorted({f"t{p % i}" for p in picks})) if i else ()
        command = "sleep 0.05; exit 1" if fail else f"sleep 0.05; echo out-t{i}"
        body += task(f"t{i}", command, deps)
    flow = workflow(tmp_path, body, name=f"p{len(shape)}")
    whole = node.dags.run(flow)
    run_id = node.dags.start(flow)
    thread = threading.Thread(target=node.dags.execute, args=(run_id,))
    thread.start()
    time.sleep(stop_after)
    with contextlib.suppress(InvalidInput):  # it may have ended already
        node.dags.cancel(run_id)
    thread.join(30)
    resumed = node.dags.status(run_id)
    if resumed.status != "succeeded":
        resumed = node.dags.resume(run_id)

    def outcome(run: Any) -> list[tuple[str, str, str | None]]:
        return [(t.task_id, t.status, t.output) for t in run.tasks]

    assert outcome(resumed) == outcome(whole)
    assert resumed.status == whole.status


def test_a_missing_skill_is_refused_before_anything_runs(node: Node, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    body = task("first", f"touch {marker}") + '[[dag.tasks]]\nid = "s"\nskill = "nope"\n'
    with pytest.raises(InvalidInput, match="task 's': no skill 'nope' is installed"):
        node.dags.run(workflow(tmp_path, body))
    assert not marker.exists()


def test_cancel_interrupts_a_running_skill_task(node: Node, tmp_path: Path) -> None:
    root = Path(__file__).parents[1]
    slow = tmp_path / "slow"
    shutil.copytree(root / "tests" / "fixtures" / "skills" / "torture", slow)
    manifest = (slow / "skill.toml").read_text().replace("timeout_ms = 2000", "timeout_ms = 60000")
    (slow / "skill.toml").write_text(manifest)
    node.skills.install(slow)
    body = '[[dag.tasks]]\nid = "spin"\nskill = "torture"\ninput = { mode = "loop" }\n'
    run_id = node.dags.start(workflow(tmp_path, body))
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(node.dags.execute(run_id)))
    thread.start()
    deadline = time.monotonic() + 30
    while node.dags.status(run_id).tasks[0].status != "running":  # the call is under way
        assert time.monotonic() < deadline
        time.sleep(0.02)
    began = time.monotonic()
    node.dags.cancel(run_id)
    thread.join(20)
    assert result == ["cancelled"] and time.monotonic() - began < 3
    assert node.dags.status(run_id).tasks[0].status == "cancelled"


def test_cancel_kills_a_native_skill_task(node: Node, tmp_path: Path) -> None:
    nap = tmp_path / "nap"
    nap.mkdir()
    (nap / "skill.toml").write_text(
        '[skill]\nname = "nap"\ntype = "command"\nentry = "./nap.sh"\n'
        "[limits]\ntimeout_ms = 60000\nmemory_mb = 256\n"
    )
    (nap / "nap.sh").write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\nexec sleep 60\n")
    (nap / "nap.sh").chmod(0o755)
    node.skills.install(nap)
    run_id = node.dags.start(workflow(tmp_path, '[[dag.tasks]]\nid = "z"\nskill = "nap"\n'))
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(node.dags.execute(run_id)))
    thread.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    node.dags.cancel(run_id)
    thread.join(20)
    assert result == ["cancelled"]
    assert gone([int((tmp_path / "pid").read_text())]) == []


def test_an_input_used_but_not_given_is_refused_before_anything_runs(
    node: Node, tmp_path: Path
) -> None:
    build = tmp_path / "build"
    (build / "keep").mkdir(parents=True)
    body = task("first", f"touch {tmp_path}/ran") + task(
        "clean", f"rm -rf {build}/{{{{ inputs.dir }}}}", ("first",)
    )
    with pytest.raises(InvalidInput, match=r"uses \{\{ inputs.dir \}\}, which is not given"):
        node.dags.run(workflow(tmp_path, body))
    assert (build / "keep").is_dir() and not (tmp_path / "ran").exists()
    assert node.dags.list() == []
    run = node.dags.run(workflow(tmp_path, body), inputs={"dir": "keep"})
    assert run.status == "succeeded" and not (build / "keep").exists()


def test_resume_of_a_failed_run_runs_the_failed_and_skipped_tasks_again(
    node: Node, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    body = (
        task("ok", "echo fine")
        + task("flaky", f"test -e {fixed}", ("ok",))
        + task("after", "echo after", ("flaky",))
    )
    run, _ = events(node, workflow(tmp_path, body))
    states = {t.task_id: t.status for t in run.tasks}
    assert run.status == "failed"
    assert states == {"ok": "succeeded", "flaky": "failed", "after": "skipped"}
    fixed.touch()
    resumed = node.dags.resume(run.id)
    assert resumed.status == "succeeded"
    assert [t.output for t in resumed.tasks] == ["fine\n", "", "after\n"]
