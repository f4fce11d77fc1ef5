"""Runs a DAG: a task starts when all its deps succeeded; independent tasks run in
parallel up to a cap per kind; every state change is written before it is acted on.

Retries back off exponentially with jitter. A failed task (after its retries) skips
everything downstream; the run fails unless the policy is allow_failures. A cancel (from
`cancel()`, Ctrl-C, or `cis dag cancel` in another process, seen within 0.2 s) kills the
running tasks' whole process trees and marks what is left cancelled.
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ..errors import CISError
from ..secrets import child_env
from ..skills.calls import Call, CallGroup
from ..skills.manifest import Manifest
from . import agents
from .processes import Finished, run_process, task_tag
from .runs import MAX_OUTPUT_CHARS, RunStatus, RunStore, TaskStatus
from .spec import DagSpec, TaskSpec, render, render_value

if TYPE_CHECKING:
    from ..memory.service import MemoryService


class Skills(Protocol):
    """What workflows need of the installed skills (the node's SkillRegistry)."""

    def group(self) -> CallGroup: ...

    def run(self, name: str, payload: Any, group: CallGroup | None = None) -> Call: ...

    def installed(self) -> list[Manifest]: ...


DEFAULT_CONCURRENCY = {"shell": 4, "agent": 2, "skill": 2, "barrier": 64}
CANCEL_POLL_S = 0.2
KILL_GRACE_S = 3.0
MAX_BACKOFF_S = 60.0
DONE: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})

Event = Callable[[str, str, str], None]  # (task id, status, detail)


class Executor:
    def __init__(
        self,
        store: RunStore,
        run_id: str,
        *,
        memory: MemoryService | None = None,
        skills: Skills | None = None,
        on_event: Event | None = None,
        kill_grace: float = KILL_GRACE_S,
    ):
        self.store = store
        self.run_id = run_id
        self.memory = memory
        self.skills = skills
        self.on_event = on_event or (lambda task, status, detail: None)
        self.kill_grace = kill_grace
        run = store.get(run_id)
        self.spec: DagSpec = store.spec(run_id)
        self.inputs = run.inputs
        self.limits = {**DEFAULT_CONCURRENCY, **run.concurrency}
        self.status: dict[str, str] = {t.task_id: t.status for t in run.tasks}
        self.outputs = {t.task_id: (t.output or "") for t in run.tasks if t.status == "succeeded"}
        self._cancelled = False
        self._running: dict[str, asyncio.Task[None]] = {}
        self.calls = None if skills is None else skills.group()  # this run's skill calls

    def cancel(self) -> None:
        """Stop the run: kill what runs, start nothing more."""
        self._cancelled = True
        for task in self._running.values():
            task.cancel()
        if self.calls is not None:  # skill calls run on threads: end this run's too
            threading.Thread(target=self.calls.interrupt, name="cis-skill-cancel").start()

    async def run(self) -> RunStatus:
        watcher = asyncio.create_task(self._watch_cancel())
        try:
            await self._schedule()
        finally:
            watcher.cancel()
            if self.calls is not None:
                self.calls.close()
        return self._finish()

    async def _watch_cancel(self) -> None:
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            if not self._cancelled and await asyncio.to_thread(
                self.store.cancel_requested, self.run_id
            ):
                self.cancel()

    async def _schedule(self) -> None:
        """Start tasks as their deps succeed, up to each kind's cap, until none is left."""
        tasks = {t.id: t for t in self.spec.tasks}
        dependents: dict[str, list[str]] = {t: [] for t in tasks}
        for task in self.spec.tasks:
            for dep in task.deps:
                dependents[dep].append(task.id)
        missing = {
            t.id: sum(self.status[d] != "succeeded" for d in t.deps) for t in self.spec.tasks
        }
        ready: dict[str, deque[str]] = {}
        in_use: dict[str, int] = {}
        wake = asyncio.Event()

        def settle(task_id: str) -> None:
            if self.status[task_id] == "succeeded":
                for child in dependents[task_id]:
                    missing[child] -= 1
                    if missing[child] == 0 and self.status[child] == "waiting":
                        ready.setdefault(tasks[child].kind, deque()).append(child)
            else:
                self._skip_below(task_id, dependents)

        for task in self.spec.tasks:  # a resumed run starts from what is stored
            if self.status[task.id] in ("failed", "skipped", "cancelled"):
                self._skip_below(task.id, dependents)
        for task in self.spec.tasks:
            if self.status[task.id] == "waiting" and missing[task.id] == 0:
                ready.setdefault(task.kind, deque()).append(task.id)

        while not self._cancelled:
            for kind, queue in ready.items():
                while queue and in_use.get(kind, 0) < self.limits.get(kind, 1):
                    task_id = queue.popleft()
                    in_use[kind] = in_use.get(kind, 0) + 1
                    self.status[task_id] = "running"
                    job = asyncio.create_task(self._attempts(tasks[task_id]))
                    self._running[task_id] = job

                    def done(_: object, kind: str = kind, task_id: str = task_id) -> None:
                        in_use[kind] -= 1
                        self._running.pop(task_id, None)
                        settle(task_id)
                        wake.set()

                    job.add_done_callback(done)
            if not self._running:
                break
            wake.clear()
            await wake.wait()
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        for task in self.spec.tasks:
            if self.status[task.id] in ("waiting", "running"):
                self._set(task.id, "cancelled", "run cancelled")

    def _skip_below(self, task_id: str, dependents: dict[str, list[str]]) -> None:
        """Skip every waiting task downstream of one that did not succeed."""
        stack = [(child, task_id) for child in dependents[task_id]]
        while stack:
            child, cause = stack.pop()
            if self.status[child] == "waiting":
                self._set(child, "skipped", f"upstream {cause} did not succeed")
                stack.extend((grandchild, child) for grandchild in dependents[child])

    def _set(self, task_id: str, status: TaskStatus, detail: str = "", **fields: object) -> None:
        self.status[task_id] = status
        self.store.task_finished(self.run_id, task_id, status, error=detail or None, **fields)  # type: ignore[arg-type]
        self.on_event(task_id, status, detail)

    async def _attempts(self, task: TaskSpec) -> None:
        try:
            if task.kind == "barrier":
                self._set(task.id, "succeeded", exit_code=0, output="")
                return
            for attempt in range(1, task.retry + 2):
                finished, error = await self._run_once(task, attempt)
                if finished.exit_code == 0 and error is None:
                    self.outputs[task.id] = finished.output.strip()
                    if task.kind == "agent":
                        await asyncio.to_thread(
                            agents.remember, self.memory, self.spec.name, task.id, finished.output
                        )
                    self._set(
                        task.id,
                        "succeeded",
                        exit_code=0,
                        output=finished.output[-MAX_OUTPUT_CHARS:],
                    )
                    return
                retryable = task.kind == "agent" and agents.retryable(
                    finished.exit_code, finished.output
                )
                if attempt <= task.retry:
                    delay = min(MAX_BACKOFF_S, task.retry_delay_secs * 2 ** (attempt - 1))
                    delay *= 0.5 + random.random()
                    self.on_event(task.id, "retrying", f"{error}; again in {delay:.1f}s")
                    await asyncio.sleep(delay)
                    continue
                self._set(
                    task.id,
                    "failed",
                    error or "failed",
                    exit_code=finished.exit_code,
                    output=finished.output,
                    retryable=retryable,
                )
        except asyncio.CancelledError:
            self._set(task.id, "cancelled", "run cancelled")
        except Exception as exc:  # a task's own setup failing fails that task, not the run
            self._set(task.id, "failed", f"{type(exc).__name__}: {exc}")

    def _started(self, task: TaskSpec, attempt: int, pid: int) -> None:
        self.store.task_started(self.run_id, task.id, attempt, pid)
        self.on_event(task.id, "running", f"attempt {attempt}")

    async def _run_once(self, task: TaskSpec, attempt: int) -> tuple[Finished, str | None]:
        if task.kind == "skill":
            return await self._run_skill(task, attempt)
        env = child_env(
            {
                **task.env,
                "CIS_RUN_ID": self.run_id,
                "CIS_TASK_ID": task.id,
                "CIS_DAG": self.spec.name,
            }
        )
        if task.kind == "agent":
            assert task.agent is not None and task.prompt is not None
            prompt = render(task.prompt, self.outputs, self.inputs)
            prompt = await asyncio.to_thread(agents.with_memories, self.memory, prompt)
            with agents.command(task.agent, prompt) as (argv, stdin):
                return await self._process(task, attempt, argv, env, stdin)
        if isinstance(task.command, list):
            argv = [render(part, self.outputs, self.inputs) for part in task.command]
        else:
            assert task.command is not None
            argv = ["/bin/sh", "-c", render(task.command, self.outputs, self.inputs, shlex.quote)]
        return await self._process(task, attempt, argv, env, None)

    async def _process(
        self,
        task: TaskSpec,
        attempt: int,
        argv: list[str],
        env: dict[str, str],
        stdin: bytes | None,
    ) -> tuple[Finished, str | None]:
        try:
            finished = await run_process(
                argv,
                env=env,
                cwd=task.cwd,
                stdin=stdin,
                timeout=task.timeout_secs,
                grace=self.kill_grace,
                on_output=lambda chunks: self.store.log(self.run_id, task.id, chunks),
                on_start=lambda pid: self._started(task, attempt, pid),
                max_output=MAX_OUTPUT_CHARS,
                tag=task_tag(self.run_id, task.id),
                die_with_runner=task.kind == "agent",  # no agent left burning tokens
            )
        except FileNotFoundError:
            return Finished(exit_code=127, output=""), f"command not found: {argv[0]}"
        except OSError as exc:
            return Finished(exit_code=126, output=""), f"cannot start {argv[0]}: {exc.strerror}"
        if finished.timed_out:
            return finished, f"timed out after {task.timeout_secs:g}s"
        if finished.exit_code != 0:
            return finished, f"exit code {finished.exit_code}"
        return finished, None

    async def _run_skill(self, task: TaskSpec, attempt: int) -> tuple[Finished, str | None]:
        """A skill task runs in this process (its own limits bound it: a cancel waits for
        its time-out); its output is its JSON output."""
        if self.skills is None:
            return Finished(exit_code=1, output=""), "skills are not available here"
        self._started(task, attempt, os.getpid())
        payload = render_value(task.input, self.outputs, self.inputs)
        try:
            call = await asyncio.to_thread(self.skills.run, str(task.skill), payload, self.calls)
        except CISError as exc:
            return Finished(exit_code=1, output=""), str(exc)
        if call.log:
            self.store.log(self.run_id, task.id, [call.log.encode("utf-8")])
        text = msgspec.json.encode(call.output).decode()
        return Finished(exit_code=0, output=text), None

    def _finish(self) -> RunStatus:
        states = set(self.status.values())
        if self._cancelled:
            status: RunStatus = "cancelled"
        elif states & {"failed", "skipped"} and self.spec.policy == "all_success":
            status = "failed"
        else:
            status = "succeeded"
        failed = [t for t, s in self.status.items() if s == "failed"]
        self.store.finish(self.run_id, status, f"failed: {', '.join(failed)}" if failed else None)
        return status
