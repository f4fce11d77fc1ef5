"""`cis dag ...`: run, watch, resume and cancel DAG workflows."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidInput
from . import output
from .state import State

dag_app = typer.Typer(help="Run DAG workflows of shell and agent tasks.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
RunArg = Annotated[str, typer.Argument(help="A run id (`cis dag list`).")]
FOLLOW_POLL_S = 0.3
MARKS = {
    "waiting": "·",
    "running": "▶",
    "retrying": "↻",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "-",
    "cancelled": "■",
}


def _inputs(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--input {pair!r}: use NAME=VALUE")
        out[name] = value
    return out


class Progress:
    """A live table of the run's tasks on a terminal, one line per change elsewhere."""

    def __init__(self, tasks: list[str], quiet: bool):
        self.state = dict.fromkeys(tasks, "waiting")
        self.detail = dict.fromkeys(tasks, "")
        self.quiet = quiet
        self.live: Any = None
        if not quiet and sys.stdout.isatty():
            from rich.live import Live

            self.live = Live(self._table(), refresh_per_second=8, transient=False)

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(None, None, None)

    def event(self, task: str, status: str, detail: str) -> None:
        self.state[task] = status
        self.detail[task] = detail
        if self.live is not None:
            self.live.update(self._table())
        elif not self.quiet:
            print(f"{MARKS.get(status, '?')} {task} {status}{': ' + detail if detail else ''}")
            sys.stdout.flush()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, show_header=False)
        for task, status in self.state.items():
            table.add_row(MARKS.get(status, "?"), task, status, self.detail[task])
        return table


def _show(run: Any, as_json: bool) -> None:
    if as_json:
        output.emit_json(run)
        return
    took = ""
    if run.started_at and run.finished_at:
        took = f" in {(run.finished_at - run.started_at) / 1000:.1f}s"
    print(f"run {run.id} ({run.name}): {run.status}{took}")
    for task in run.tasks:
        line = f"  {MARKS.get(task.status, '?')} {task.task_id:<20} {task.status}"
        if task.attempts > 1:
            line += f" (attempts {task.attempts})"
        if task.error:
            line += f": {task.error}"
        print(line)


def _exit_for(status: str) -> None:
    if status != "succeeded":
        raise typer.Exit(1)


@dag_app.command("run")
def run(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A workflow file: .toml, .yaml or .json.")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", help="NAME=VALUE for {{ inputs.NAME }}.")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", help="Tasks at once, per kind [shell 4, agent 2]."),
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a workflow: independent tasks in parallel; exit 1 unless it succeeds."""
    state: State = ctx.obj
    with state.open() as node:
        run_id = node.dags.start(file, inputs=_inputs(inputs), concurrency=concurrency)
        if detach:
            node.dags.launch(run_id)
            output.emit_json({"run": run_id}) if as_json else print(run_id)
            return
        spec = node.dags.runs.spec(run_id)
        if not as_json:
            print(f"run {run_id} ({spec.name}), {len(spec.tasks)} tasks", flush=True)
        with Progress([t.id for t in spec.tasks], quiet=as_json) as progress:
            node.dags.execute(run_id, on_event=progress.event)
        finished = node.dags.status(run_id)
    _show(finished, as_json)
    _exit_for(finished.status)


@dag_app.command("resume")
def resume(
    ctx: typer.Context,
    run_id: RunArg,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Go on with an interrupted, failed or cancelled run; finished tasks are kept."""
    state: State = ctx.obj
    with state.open() as node:
        spec = node.dags.runs.spec(run_id)
        with Progress([t.id for t in spec.tasks], quiet=quiet or as_json) as progress:
            finished = node.dags.resume(run_id, on_event=progress.event)
    if not quiet:
        _show(finished, as_json)
    _exit_for(finished.status)


@dag_app.command("status")
def status(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Argument(help="A run id [the latest run].")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A run and every task's state (the latest run without RUN)."""
    state: State = ctx.obj
    with state.open() as node:
        _show(node.dags.status(run_id), as_json)


@dag_app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent runs, newest first."""
    state: State = ctx.obj
    with state.open() as node:
        runs = node.dags.list(limit)
    for run in runs:
        run.tasks = [] if not as_json else run.tasks
    output.emit_lines(
        runs, as_json, lambda r: f"{r.id}  {r.name:<20} {r.status:<11} {output.when(r.created_at)}"
    )


@dag_app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: RunArg,
    task: Annotated[str | None, typer.Argument(help="Only this task.")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Wait for more.")] = False,
) -> None:
    """A run's task output (stdout and stderr), as it was captured."""
    state: State = ctx.obj
    with state.open() as node:
        runs = node.dags.runs
        seen: dict[str, int] = {}
        while True:
            sys.stdout.write(runs.log_text(run_id, task, seen))
            sys.stdout.flush()
            if not follow or runs.get(run_id).status not in ("running", "pending"):
                break
            time.sleep(FOLLOW_POLL_S)


@dag_app.command("cancel")
def cancel(ctx: typer.Context, run_id: RunArg, as_json: JsonOpt = False) -> None:
    """Stop a running run: its tasks' process trees are killed."""
    state: State = ctx.obj
    with state.open() as node:
        node.dags.cancel(run_id)
    output.emit_json({"cancelling": run_id}) if as_json else print(f"cancelling {run_id}")
