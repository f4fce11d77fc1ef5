"""What a skill run gives back, whatever ran it; how its failures read; and the groups
skill calls run in, which end together and alone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from .wasm import WasmRuntime

MAX_OUTPUT = 16 * 1024 * 1024
MAX_LOG = 64 * 1024


class Call(msgspec.Struct, kw_only=True):
    output: Any
    log: str
    millis: float


def failure(what: str, log: str) -> str:
    """A skill's failure, with the end of its log."""
    tail = log.strip()[-500:]
    return f"skill {what}" + (f"; its log ends: {tail}" if tail else "")


class CallGroup:
    """The skill calls of one workflow run (or of direct callers): `interrupt` ends
    them, and no other call. The group has a WASM engine of its own (made on first use;
    compiled modules come from the shared disk cache) and knows the native processes it
    started."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._runtime: WasmRuntime | None = None
        self._processes: set[subprocess.Popen[bytes]] = set()
        self.interrupted = False

    @property
    def runtime(self) -> WasmRuntime:
        with self._lock:
            if self._runtime is None:
                from .wasm import WasmRuntime  # wasmtime loads only when a WASM skill runs

                self._runtime = WasmRuntime(self.cache_dir)
            return self._runtime

    @contextlib.contextmanager
    def process(self, process: subprocess.Popen[bytes]) -> Any:
        """While the block runs, `process` (a group leader) belongs to this group."""
        with self._lock:
            self._processes.add(process)
            if self.interrupted:
                _kill(process)
        try:
            yield process
        finally:
            with self._lock:
                self._processes.discard(process)

    def interrupt(self) -> None:
        """End every call of this group running now (their callers get SkillError), and
        refuse later ones: the group's run is over."""
        with self._lock:
            self.interrupted = True
            running = list(self._processes)
            runtime = self._runtime
        for process in running:
            _kill(process)
        if runtime is not None:
            runtime.interrupt()

    def close(self) -> None:
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
