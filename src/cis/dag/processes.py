"""A task's processes: all of them found, and killed together on time-out or cancel.

A task runs in a session (and process group) of its own, and every process it starts
carries a tag `<run id>:<task id>` in its environment (`CIS_RUNS`, inherited however it
forks, after the tags of any runs it is nested in). A kill finds the task's processes
three ways, so a daemon that double-forked or called setsid is found too: its
descendants by parent link, every process of its session or process group, and every
process whose environment holds its tag (a resume sweeps every tag of the run). They get SIGTERM, a
grace period, then SIGKILL. Process handling is psutil's, so it works on Linux and
macOS; on Linux an agent's process is also killed when its runner dies
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import msgspec
import psutil

READ_CHUNK = 64 * 1024
FLUSH_EVERY_S = 0.25
RUNS_ENV = "CIS_RUNS"  # the tasks a process belongs to, outermost first, space-separated
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


class Finished(msgspec.Struct, kw_only=True):
    exit_code: int | None  # None when it was killed (time-out or cancel)
    output: str
    timed_out: bool = False


def _die_with_parent() -> None:
    """In the child before exec (Linux): be killed if the runner dies, even by SIGKILL.
    One C call, so it is safe in a child forked from a threaded process."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def task_tag(run_id: str, task_id: str) -> str:
    return f"{run_id}:{task_id}"


def _tagged(process: psutil.Process, tag: str) -> bool:
    """Whether the process belongs to the task `tag`, or to the run `tag` ("<run>:")."""
    tags = process.environ().get(RUNS_ENV, "").split()
    return any(t == tag or (tag.endswith(":") and t.startswith(tag)) for t in tags)


def process_tag(pid: int | None = None) -> str:
    """`pid-starttime` of a process: unlike a bare pid, never reused for another one."""
    pid = os.getpid() if pid is None else pid
    try:
        return f"{pid}-{psutil.Process(pid).create_time():.2f}"
    except (*_GONE, psutil.AccessDenied):
        return f"{pid}-?"


def alive(tag: str | None) -> bool:
    """Whether the process a tag names still runs (not a zombie)."""
    if not tag or "-" not in tag:
        return False
    pid = tag.partition("-")[0]
    return pid.isdigit() and process_tag(int(pid)) == tag and running(int(pid))


def running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except (*_GONE, psutil.AccessDenied):
        return False


def _protected() -> set[int]:
    """This process and its ancestors: never swept, whatever their environment says."""
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def members(leader: int | None = None, tag: str | None = None) -> set[psutil.Process]:
    """The live processes of a task: its descendants, session and process group (when
    `leader` is given), and those tagged with `tag` (a task, or "<run id>:" for a run)."""
    found: dict[int, psutil.Process] = {}
    if leader is not None:
        with contextlib.suppress(*_GONE, psutil.AccessDenied):
            root = psutil.Process(leader)
            found[root.pid] = root
            found.update((c.pid, c) for c in root.children(recursive=True))
    for process in psutil.process_iter():
        if process.pid in found:
            continue
        try:
            if (leader is not None and leader in _groups(process)) or (
                tag is not None and _tagged(process, tag)
            ):
                found[process.pid] = process
        except (*_GONE, psutil.AccessDenied, OSError):
            continue
    protected = _protected()
    return {p for pid, p in found.items() if pid not in protected}


def _groups(process: psutil.Process) -> tuple[int, int]:
    return os.getpgid(process.pid), os.getsid(process.pid)


def _signal(processes: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for process in processes:
        with contextlib.suppress(*_GONE, psutil.AccessDenied):
            process.send_signal(sig)


def kill_now(leader: int | None = None, tag: str | None = None) -> None:
    """SIGKILL what a task (or a whole run) left (a runner killed by SIGKILL)."""
    for _ in range(3):  # a process forking meanwhile is found on the next pass
        found = members(leader, tag)
        if not found:
            return
        _signal(found, signal.SIGKILL)
        psutil.wait_procs(list(found), timeout=1)


async def kill_tree(process: asyncio.subprocess.Process, tag: str | None, grace: float) -> None:
    """SIGTERM every process of the task, wait `grace`, then SIGKILL what is left."""
    found = await asyncio.to_thread(members, process.pid, tag)
    _signal(found, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        found |= await asyncio.to_thread(members, process.pid, tag)
        if process.returncode is not None and not any(p.is_running() for p in found):
            break
        await asyncio.sleep(0.05)
    for _ in range(3):
        found = {p for p in found if p.is_running()} | await asyncio.to_thread(
            members, process.pid, tag
        )
        if not found:
            break
        _signal(found, signal.SIGKILL)
        await asyncio.to_thread(psutil.wait_procs, list(found), 1)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


async def run_process(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str | None,
    stdin: bytes | None,
    timeout: float | None,
    grace: float,
    on_output: Callable[[list[bytes]], None],
    on_start: Callable[[int], None],
    max_output: int,
    tag: str | None = None,
    die_with_runner: bool = False,
) -> Finished:
    """Run to the end, time-out or cancellation (CancelledError is re-raised after every
    process of the task is killed). `on_output` gets the output in chunks, about every
    0.25 s; `tag` (see task_tag) goes into the processes' environment, for the sweep.

    With `die_with_runner` (Linux) the process is SIGKILLed if this one dies, even by
    SIGKILL. That costs a full fork instead of vfork (about 8 ms a start here instead of
    1); without it, a resume kills what a dead runner left."""
    if tag is not None:
        env = {**env, RUNS_ENV: " ".join([*env.get(RUNS_ENV, "").split(), tag])}
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent if die_with_runner and sys.platform == "linux" else None,
    )
    on_start(process.pid)
    kept = bytearray()
    pending: list[bytes] = []
    last_flush = time.monotonic()

    async def pump() -> None:
        nonlocal last_flush
        assert process.stdout is not None
        if stdin is not None and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(stdin)
                await process.stdin.drain()
            process.stdin.close()
        while chunk := await process.stdout.read(READ_CHUNK):
            kept.extend(chunk)
            if len(kept) > max_output:
                del kept[: len(kept) - max_output]
            pending.append(chunk)
            if time.monotonic() - last_flush >= FLUSH_EVERY_S:
                on_output(pending[:])
                pending.clear()
                last_flush = time.monotonic()
        await process.wait()

    timed_out = False
    try:
        await asyncio.wait_for(pump(), timeout)
    except TimeoutError:
        timed_out = True
        await kill_tree(process, tag, grace)
    except asyncio.CancelledError:
        await asyncio.shield(kill_tree(process, tag, grace))
        on_output(pending[:])
        raise
    on_output(pending[:])
    text = kept.decode("utf-8", errors="replace")
    return Finished(
        exit_code=None if timed_out else process.returncode, output=text, timed_out=timed_out
    )
