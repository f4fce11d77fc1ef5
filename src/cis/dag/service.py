"""The DAG API: start a workflow file, execute or resume a run, cancel it, read it back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..secrets import child_env, passphrase_for_child
from . import spec as dag_spec
from .executor import DEFAULT_CONCURRENCY, Event, Executor, Skills
from .processes import kill_now, task_tag
from .runs import Run, RunStatus, RunStore

if TYPE_CHECKING:
    from ..memory.service import MemoryService
    from ..store.sqlite import Database


class DagService:
    def __init__(
        self,
        db: Database,
        memory: MemoryService | None,
        data_dir: Path,
        skills: Skills | None = None,
    ):
        self.runs = RunStore(db)
        self.memory = memory
        self.data_dir = data_dir
        self.skills = skills

    def start(
        self,
        path: str | os.PathLike[str],
        *,
        inputs: dict[str, str] | None = None,
        concurrency: int | dict[str, int] | None = None,
    ) -> str:
        """Check the workflow file (with its inputs, against the installed skills) and
        record a pending run of it; its id."""
        given = dict(inputs or {})
        spec = dag_spec.load(Path(path), inputs=given, installed=self._installed())
        return self.runs.create(spec, given, _limits(concurrency))

    def _installed(self) -> set[str]:
        return set() if self.skills is None else {m.skill.name for m in self.skills.installed()}

    def start_text(
        self,
        text: str,
        *,
        format: str = "toml",
        inputs: dict[str, str] | None = None,
        concurrency: int | dict[str, int] | None = None,
    ) -> str:
        """`start` for a workflow given as text (toml, yaml or json)."""
        if format not in ("toml", "yaml", "yml", "json"):
            raise InvalidInput(f"format {format!r}: use toml, yaml or json")
        given = dict(inputs or {})
        name = f"workflow.{format}"
        spec = dag_spec.parse(text, name, inputs=given, installed=self._installed())
        return self.runs.create(spec, given, _limits(concurrency))

    def submit(
        self,
        *,
        file: str | None = None,
        workflow: str | None = None,
        format: str = "toml",
        inputs: dict[str, str] | None = None,
        concurrency: int | None = None,
    ) -> Run:
        """Start a workflow (a file on this machine, or its text) in a process of its own;
        the pending run, to follow with `status`."""
        if (file is None) == (workflow is None):
            raise InvalidInput("give either file (a path on the node) or workflow (its text)")
        if file is not None:
            run_id = self.start(file, inputs=inputs, concurrency=concurrency)
        else:
            assert workflow is not None
            run_id = self.start_text(
                workflow, format=format, inputs=inputs, concurrency=concurrency
            )
        self.launch(run_id)
        return self.runs.get(run_id)

    def launch(self, run_id: str) -> None:
        """Execute a pending run in a process of its own, which outlives the caller (it
        gets the passphrase, if there is one, on its standard input)."""
        extra, passphrase = passphrase_for_child()
        env = child_env({**extra, "CIS_DATA_DIR": str(self.data_dir)})
        runner = subprocess.Popen(
            [sys.executable, "-m", "cis.cli.entry", "dag", "resume", run_id, "--quiet"],
            env=env,
            stdin=subprocess.DEVNULL if passphrase is None else subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if runner.stdin is not None:
            with runner.stdin:
                runner.stdin.write(passphrase or b"")

    def execute(self, run_id: str, *, on_event: Event | None = None) -> RunStatus:
        """Run (or resume) a run in this process until it ends; Ctrl-C cancels it."""
        for tag in self.runs.claim(run_id):  # what a runner killed by SIGKILL left behind
            kill_now(leader=int(tag.split("-", 1)[0]))
        kill_now(tag=task_tag(run_id, ""))  # and every process that names the run
        executor = Executor(
            self.runs, run_id, memory=self.memory, skills=self.skills, on_event=on_event
        )

        async def main() -> RunStatus:
            loop = asyncio.get_running_loop()
            handled = threading.current_thread() is threading.main_thread()
            if handled:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, executor.cancel)
            try:
                return await executor.run()
            finally:
                if handled:
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        with contextlib.suppress(Exception):
                            loop.remove_signal_handler(sig)

        return asyncio.run(main())

    def run(
        self,
        path: str | os.PathLike[str],
        *,
        inputs: dict[str, str] | None = None,
        concurrency: int | dict[str, int] | None = None,
        on_event: Event | None = None,
    ) -> Run:
        """Start and execute a workflow; the finished run."""
        run_id = self.start(path, inputs=inputs, concurrency=concurrency)
        self.execute(run_id, on_event=on_event)
        return self.runs.get(run_id)

    def resume(self, run_id: str, *, on_event: Event | None = None) -> Run:
        """Go on with an interrupted, failed or cancelled run: succeeded tasks keep their
        output; every other task (failed, skipped, cancelled, cut short) runs again."""
        self.execute(run_id, on_event=on_event)
        return self.runs.get(run_id)

    def cancel(self, run_id: str) -> Run:
        """Ask the process running it to stop; it kills the running tasks within 0.2 s."""
        return self.runs.request_cancel(run_id)

    def status(self, run_id: str | None = None) -> Run:
        return self.runs.get(run_id)

    def list(self, limit: int = 20) -> list[Run]:
        return self.runs.recent(limit)


def _limits(concurrency: int | dict[str, int] | None) -> dict[str, int]:
    if concurrency is None:
        return dict(DEFAULT_CONCURRENCY)
    if isinstance(concurrency, int) and not isinstance(concurrency, bool):
        if concurrency < 1:
            raise InvalidInput("concurrency must be at least 1")
        return dict.fromkeys(DEFAULT_CONCURRENCY, concurrency)
    if isinstance(concurrency, dict):
        limits = dict(DEFAULT_CONCURRENCY)
        for kind, value in concurrency.items():
            if kind not in limits or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"concurrency for {kind!r} must be a whole number >= 1")
            limits[kind] = value
        return limits
    raise InvalidInput("concurrency must be a number or a map of kind to number")
