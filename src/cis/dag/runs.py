"""Durable DAG runs: every state change of a run and its tasks, and their logs, in SQLite.

A run is owned by the process executing it (`owner`: pid and process start time); a run
marked running whose owner is gone was interrupted and can be resumed.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ..clock import now_ms
from ..errors import InvalidInput, NotFound
from ..memory.validate import new_id
from ..store.sqlite import Database, scalar
from .processes import alive, process_tag
from .spec import DagSpec

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled", "interrupted"]
TaskStatus = Literal["waiting", "running", "succeeded", "failed", "skipped", "cancelled"]
MAX_OUTPUT_CHARS = 1_000_000  # kept per task for templates and `cis dag status`


class TaskState(msgspec.Struct, kw_only=True):
    task_id: str
    status: TaskStatus
    attempts: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    exit_code: int | None = None
    output: str | None = None
    error: str | None = None
    retryable: bool = False


class Run(msgspec.Struct, kw_only=True):
    id: str
    name: str
    status: RunStatus
    inputs: dict[str, str]
    concurrency: dict[str, int]
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None
    error: str | None = None
    owner: str | None = None
    tasks: list[TaskState] = []


_COLUMNS = "task_id, status, attempts, started_at, finished_at, exit_code, output, error, retryable"


class RunStore:
    def __init__(self, db: Database):
        self.db = db

    def create(self, spec: DagSpec, inputs: dict[str, str], concurrency: dict[str, int]) -> str:
        run_id = new_id()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO dag_runs(id, name, spec, inputs, concurrency, status, created_at)"
                " VALUES (?,?,?,?,?,'pending',?)",
                (
                    run_id,
                    spec.name,
                    msgspec.json.encode(spec).decode(),
                    msgspec.json.encode(inputs).decode(),
                    msgspec.json.encode(concurrency).decode(),
                    now_ms(),
                ),
            )
            conn.executemany(
                "INSERT INTO dag_tasks(run_id, task_id, status) VALUES (?,?,'waiting')",
                [(run_id, t.id) for t in spec.tasks],
            )
        return run_id

    def spec(self, run_id: str) -> DagSpec:
        with self.db.read() as conn:
            raw = scalar(conn, "SELECT spec FROM dag_runs WHERE id = ?", (run_id,))
        if raw is None:
            raise NotFound(f"no run {run_id!r}")
        return msgspec.json.decode(str(raw), type=DagSpec)

    def get(self, run_id: str | None = None, *, logs: bool = False) -> Run:
        """A run with its tasks (the latest run when `run_id` is None)."""
        with self.db.read() as conn:
            if run_id is None:
                run_id = scalar(conn, "SELECT id FROM dag_runs ORDER BY created_at DESC, id DESC")
                if run_id is None:
                    raise NotFound("no runs yet; start one with `cis dag run FILE`")
            rows = conn.execute(
                "SELECT id, name, status, inputs, concurrency, created_at, started_at,"
                " finished_at, error, owner, spec FROM dag_runs WHERE id = ?",
                (run_id,),
            ).fetchall()
            if not rows:
                raise NotFound(f"no run {run_id!r}; `cis dag list` shows the runs")
            tasks = conn.execute(
                f"SELECT {_COLUMNS} FROM dag_tasks WHERE run_id = ?", (run_id,)
            ).fetchall()
        rid, name, status, inputs, concurrency, created, started, finished, error, owner, spec = (
            rows[0]
        )
        dag = msgspec.json.decode(str(spec), type=DagSpec)
        order = {t.id: i for i, t in enumerate(dag.tasks)}
        states = sorted((_task(r) for r in tasks), key=lambda t: order.get(t.task_id, 0))
        status = str(status)
        if status == "running" and not alive(None if owner is None else str(owner)):
            status = "interrupted"
        return Run(
            id=str(rid),
            name=str(name),
            status=status,  # type: ignore[arg-type]
            inputs=msgspec.json.decode(str(inputs)),
            concurrency=msgspec.json.decode(str(concurrency)),
            created_at=int(created),  # type: ignore[arg-type]
            started_at=None if started is None else int(started),
            finished_at=None if finished is None else int(finished),
            error=None if error is None else str(error),
            owner=None if owner is None else str(owner),
            tasks=states,
        )

    def recent(self, limit: int = 20) -> list[Run]:
        with self.db.read() as conn:
            ids = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM dag_runs ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
                )
            ]
        return [self.get(i) for i in ids]

    # ---- state changes ---------------------------------------------------------------

    def claim(self, run_id: str) -> list[str]:
        """Take a pending run to execute it, or an ended one to resume it (not while
        another live process runs it: Conflict). Returns the process tags of tasks an
        interrupted runner left running, for the caller to kill."""
        from ..errors import Conflict

        with self.db.write() as conn:
            rows = conn.execute(
                "SELECT status, owner FROM dag_runs WHERE id = ?", (run_id,)
            ).fetchall()
            if not rows:
                raise NotFound(f"no run {run_id!r}")
            status, owner = rows[0]
            if status == "running" and alive(None if owner is None else str(owner)):
                raise Conflict(f"run {run_id} is still running (process {owner})")
            if status == "succeeded":
                raise InvalidInput(f"run {run_id} has succeeded; nothing to resume")
            left = [
                str(r[0])
                for r in conn.execute(
                    "SELECT process FROM dag_tasks WHERE run_id = ? AND status = 'running'"
                    " AND process IS NOT NULL",
                    (run_id,),
                )
            ]
            conn.execute(
                "UPDATE dag_runs SET status='running', owner=?, cancel=0, finished_at=NULL,"
                " error=NULL, started_at=coalesce(started_at, ?) WHERE id = ?",
                (process_tag(), now_ms(), run_id),
            )
            # every task that did not succeed runs again (a resume is asked for)
            conn.execute(
                "UPDATE dag_tasks SET status='waiting', error=NULL, exit_code=NULL,"
                " retryable=0, attempts=0 WHERE run_id = ? AND status != 'succeeded'",
                (run_id,),
            )
        return [tag for tag in left if alive(tag)]

    def task_started(self, run_id: str, task_id: str, attempt: int, pid: int) -> None:
        """A task's process is running: its attempt, and the process group it leads (to
        kill it if its runner dies)."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE dag_tasks SET status='running', attempts=?, started_at=?, error=NULL,"
                " process=? WHERE run_id = ? AND task_id = ?",
                (attempt, now_ms(), process_tag(pid), run_id, task_id),
            )

    def task_finished(
        self,
        run_id: str,
        task_id: str,
        status: TaskStatus,
        *,
        exit_code: int | None = None,
        output: str | None = None,
        error: str | None = None,
        retryable: bool = False,
    ) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE dag_tasks SET status=?, finished_at=?, exit_code=?, output=?, error=?,"
                " retryable=? WHERE run_id = ? AND task_id = ?",
                (
                    status,
                    now_ms(),
                    exit_code,
                    None if output is None else output[-MAX_OUTPUT_CHARS:],
                    error,
                    int(retryable),
                    run_id,
                    task_id,
                ),
            )

    def finish(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE dag_runs SET status=?, finished_at=?, error=?, owner=NULL WHERE id = ?",
                (status, now_ms(), error, run_id),
            )

    def request_cancel(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run.status != "running":
            raise InvalidInput(f"run {run_id} is {run.status}, not running")
        with self.db.write() as conn:
            conn.execute("UPDATE dag_runs SET cancel = 1 WHERE id = ?", (run_id,))
        return run

    def cancel_requested(self, run_id: str) -> bool:
        with self.db.read() as conn:
            return bool(scalar(conn, "SELECT cancel FROM dag_runs WHERE id = ?", (run_id,)))

    def log(self, run_id: str, task_id: str, chunks: list[bytes]) -> None:
        if not chunks:
            return
        with self.db.write() as conn:
            seq = scalar(
                conn,
                "SELECT coalesce(max(seq), 0) FROM dag_logs WHERE run_id = ? AND task_id = ?",
                (run_id, task_id),
            )
            now = now_ms()
            conn.executemany(
                "INSERT INTO dag_logs VALUES (?,?,?,?,?)",
                [(run_id, task_id, int(seq) + i, now, c) for i, c in enumerate(chunks, 1)],
            )

    def logs(
        self, run_id: str, task_id: str | None = None, seen: dict[str, int] | None = None
    ) -> list[tuple[str, int, bytes]]:
        """(task, seq, bytes) of a run's log chunks not in `seen` (task -> last seq)."""
        where, args = "run_id = ?", [run_id]
        if task_id is not None:
            where += " AND task_id = ?"
            args.append(task_id)
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT task_id, seq, data FROM dag_logs WHERE {where} ORDER BY at, task_id, seq",
                args,
            ).fetchall()
        seen = seen or {}
        return [
            (str(t), int(q), bytes(d))  # type: ignore[arg-type]
            for t, q, d in rows
            if int(q) > seen.get(str(t), 0)  # type: ignore[arg-type]
        ]

    def log_text(
        self, run_id: str, task_id: str | None = None, seen: dict[str, int] | None = None
    ) -> str:
        """The captured output not yet in `seen` (task -> last chunk, updated), as text;
        without `task_id` every line is led by `[task]`."""
        if task_id is not None and task_id not in {t.id for t in self.spec(run_id).tasks}:
            raise InvalidInput(f"run {run_id} has no task {task_id!r}")
        seen = {} if seen is None else seen
        out = []
        for task, seq, data in self.logs(run_id, task_id, seen):
            seen[task] = seq
            text = data.decode("utf-8", errors="replace")
            out += [text] if task_id else [f"[{task}] {line}" for line in text.splitlines(True)]
        return "".join(out)


def _task(row: Any) -> TaskState:
    task_id, status, attempts, started, finished, code, output, error, retryable = row
    return TaskState(
        task_id=str(task_id),
        status=status,
        attempts=int(attempts),
        started_at=started,
        finished_at=finished,
        exit_code=code,
        output=output,
        error=error,
        retryable=bool(retryable),
    )
