"""A task's process: its own process group, output captured, killed whole on time-out or
cancel (SIGTERM to the group and every descendant found, a grace period, then SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable, Sequence

import msgspec

READ_CHUNK = 64 * 1024
FLUSH_EVERY_S = 0.25


class Finished(msgspec.Struct, kw_only=True):
    exit_code: int | None  # None when it was killed (time-out or cancel)
    output: str
    timed_out: bool = False


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: be killed if the runner dies (even by SIGKILL). Only one
    C call, so it is safe in a child forked from a threaded process."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_group(tag_pid: int) -> None:
    """SIGKILL a process group and its descendants (what a dead runner left behind)."""
    _signal(tag_pid, descendants(tag_pid) | {tag_pid}, signal.SIGKILL)


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> set[int]:
    """Every live process below `root`, found through /proc parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        if fields is None or len(fields) < 2:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _signal(group: int, pids: set[int], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def kill_tree(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the process's group and descendants, wait `grace`, then SIGKILL them."""
    pids = descendants(process.pid) | {process.pid}
    _signal(process.pid, pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        pids |= descendants(process.pid)
        if process.returncode is not None and not any(running(p) for p in pids):
            return
        await asyncio.sleep(0.05)
    _signal(process.pid, pids | descendants(process.pid), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


def running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[:1] != ["Z"]


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
    die_with_runner: bool = False,
) -> Finished:
    """Run to the end, time-out or cancellation (CancelledError is re-raised after the
    whole tree is killed). `on_output` gets the output in chunks, about every 0.25 s.

    With `die_with_runner` the process is SIGKILLed if this one dies, even by SIGKILL.
    That costs a full fork instead of vfork (about 8 ms a start here instead of 1); without
    it, a resume kills what a dead runner left (its process groups are on record)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent if die_with_runner else None,
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
        await kill_tree(process, grace)
    except asyncio.CancelledError:
        await asyncio.shield(kill_tree(process, grace))
        on_output(pending[:])
        raise
    on_output(pending[:])
    text = kept.decode("utf-8", errors="replace")
    return Finished(
        exit_code=None if timed_out else process.returncode, output=text, timed_out=timed_out
    )
