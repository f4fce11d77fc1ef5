"""Skills of type `command` and `python`: ordinary processes of the user, not sandboxed.

The input JSON goes to stdin, the output JSON comes from stdout, stderr is the log, as
for WASM. The manifest's time-out (the whole process group is killed) and memory limit
(RLIMIT_AS) apply; its permissions cannot be enforced on a native process, so install
only such skills as you trust. No secret of the node reaches it (see cis.secrets).
"""

from __future__ import annotations

import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ..errors import InvalidInput, SkillError
from ..secrets import child_env
from .calls import MAX_LOG, MAX_OUTPUT, Call, CallGroup, failure
from .manifest import Manifest

# runs `module:function` of a python skill: JSON in on stdin, JSON out on stdout
PYTHON_RUNNER = (
    "import importlib, json, sys\n"
    "module, function = sys.argv[1], sys.argv[2]\n"
    "result = getattr(importlib.import_module(module), function)(json.load(sys.stdin))\n"
    "json.dump(result, sys.stdout)\n"
)


def argv_of(manifest: Manifest, directory: Path) -> list[str]:
    """The command line of a native skill; InvalidInput if its entry is malformed."""
    entry = manifest.skill.entry
    if manifest.skill.type == "python":
        module, sep, function = entry.partition(":")
        if not sep or not module.isidentifier() or not function.isidentifier():
            raise InvalidInput(f"python skill entry {entry!r}: use module:function")
        if not (directory / f"{module}.py").is_file():
            raise InvalidInput(f"python skill entry {entry!r}: no {module}.py in the skill")
        return [sys.executable, "-c", PYTHON_RUNNER, module, function]
    argv = shlex.split(entry)
    if not argv:
        raise InvalidInput("command skill entry is empty")
    if argv[0].startswith("./"):
        program = (directory / argv[0]).resolve()
        if directory.resolve() not in program.parents or not program.is_file():
            raise InvalidInput(f"command skill entry {argv[0]!r} is not a file inside the skill")
        argv[0] = str(program)
    return argv


def _limits(memory_bytes: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return apply


def run_native(manifest: Manifest, directory: Path, payload: Any, group: CallGroup) -> Call:
    started = time.perf_counter()
    argv = argv_of(manifest, directory)
    env = child_env({"CIS_SKILL": manifest.skill.name, "PYTHONPATH": str(directory)})
    limits = manifest.limits
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=directory,
            env=env,
            start_new_session=True,
            preexec_fn=_limits(limits.memory_mb * 1024 * 1024),
        )
    except OSError as exc:
        raise SkillError(f"skill cannot start {argv[0]}: {exc.strerror}") from exc
    with group.process(process):
        try:
            out, log = process.communicate(
                msgspec.json.encode(payload), timeout=limits.timeout_ms / 1000
            )
        except subprocess.TimeoutExpired as exc:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise SkillError(
                f"skill timed out after {limits.timeout_ms} ms (limits.timeout_ms)"
            ) from exc
    text = log[-MAX_LOG:].decode("utf-8", errors="replace")
    if group.interrupted and process.returncode == -signal.SIGKILL:
        raise SkillError(failure("was interrupted: its run was cancelled", text))
    if process.returncode != 0:
        raise SkillError(failure(f"exited with code {process.returncode}", text))
    if len(out) > MAX_OUTPUT:
        raise SkillError(f"skill wrote more than {MAX_OUTPUT} bytes")
    try:
        result = msgspec.json.decode(out) if out.strip() else None
    except msgspec.DecodeError as exc:
        raise SkillError(f"skill wrote output that is not JSON: {out[:200]!r}") from exc
    return Call(output=result, log=text, millis=(time.perf_counter() - started) * 1000)
