"""Secrets never reach a process CIS starts: the one environment every child gets.

Withheld: CIS_PASSPHRASE, and every CIS_* variable whose name says it holds a secret
(TOKEN, SECRET, KEY, PASSWORD or PASSPHRASE in it, e.g. a remote skill's token). CIS's
own runner processes (a detached `cis dag resume`) take the passphrase on their
standard input instead, never on argv, in the environment or in a file.
"""

from __future__ import annotations

import os
import re
import sys

PASSPHRASE = "CIS_PASSPHRASE"
FROM_STDIN = "CIS_PARENT_STDIN"  # "1": the passphrase comes on stdin (no secret in its name)
_SECRET = re.compile(r"CIS_\w*(TOKEN|SECRET|KEY|PASSWORD|PASSPHRASE)\w*")


def is_secret(name: str) -> bool:
    return name == PASSPHRASE or bool(_SECRET.fullmatch(name.upper()))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its secrets, plus `extra` (checked too)."""
    env = {k: v for k, v in os.environ.items() if not is_secret(k)}
    for name, value in (extra or {}).items():
        if not is_secret(name):
            env[name] = value
    return env


def passphrase_for_child() -> tuple[dict[str, str], bytes | None]:
    """What a CIS runner process needs to open the node: extra environment, and the
    bytes to write to its standard input (None when the node has no passphrase)."""
    passphrase = os.environ.get(PASSPHRASE)
    if passphrase is None:
        return {}, None
    return {FROM_STDIN: "1"}, passphrase.encode("utf-8") + b"\n"


def passphrase_from_parent() -> str | None:
    """In a runner that its parent gave the passphrase on stdin: that passphrase (read
    once); else None."""
    if os.environ.pop(FROM_STDIN, None) != "1":
        return None
    return sys.stdin.buffer.readline().rstrip(b"\n").decode("utf-8")
