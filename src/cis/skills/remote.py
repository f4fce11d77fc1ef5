"""Skills of type `remote`: a skill installed on another node, run through its HTTP API.

The entry is the other node's run endpoint (`http://HOST:7676/v1/skills/NAME/run`); the
token comes from the environment variable named by `token_env`. The manifest's time-out
bounds the whole request.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec

from ..errors import SkillError
from .calls import Call, CallGroup
from .manifest import Manifest


def run_remote(manifest: Manifest, directory: Path, payload: Any, group: CallGroup) -> Call:
    """The call, made over HTTP (a cancel does not reach it: the time-out bounds it)."""
    import urllib.error  # here: a CLI call that runs no remote skill skips 30 ms of imports
    import urllib.request

    info = manifest.skill
    headers = {"Content-Type": "application/json"}
    if info.token_env:
        token = os.environ.get(info.token_env)
        if not token:
            raise SkillError(f"remote skill {info.name}: set {info.token_env} to the node's token")
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        info.entry, data=msgspec.json.encode(payload), headers=headers, method="POST"
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=manifest.limits.timeout_ms / 1000) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        raise SkillError(f"remote skill {info.name}: {_error(exc.read())}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SkillError(f"remote skill {info.name}: cannot reach {info.entry} ({reason})") from exc
    try:
        result = msgspec.json.decode(body)
        return Call(
            output=result["output"],
            log=str(result.get("log", "")),
            millis=(time.perf_counter() - started) * 1000,
        )
    except (msgspec.DecodeError, KeyError, TypeError) as exc:
        raise SkillError(f"remote skill {info.name}: the node answered no skill result") from exc


def _error(body: bytes) -> str:
    try:
        error = msgspec.json.decode(body)["error"]
        return f"{error['code']}: {error['message']}"
    except (msgspec.DecodeError, KeyError, TypeError):
        return body[:200].decode("utf-8", errors="replace")
