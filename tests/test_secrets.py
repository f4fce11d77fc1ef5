"""No secret reaches a process CIS starts, and private memory never rides on argv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cis import Node
from cis.secrets import child_env, is_secret

from .conftest import CIS

PASSPHRASE = "correct horse battery staple"
TOKEN = "cis_remote-token-of-another-node"

SPY = """#!/bin/sh
# a stand-in agent CLI: records what it was given
printf '%s\\n' "$@" > "$SPY_DIR/{name}.args"
env > "$SPY_DIR/{name}.env"
file=""
while [ "$#" -gt 0 ]; do [ "$1" = "--message-file" ] && file="$2"; shift; done
if [ -n "$file" ]; then
  stat -c %a "$file" > "$SPY_DIR/{name}.mode"; cat "$file" > "$SPY_DIR/{name}.prompt"
  echo "$file" > "$SPY_DIR/{name}.path"
else
  cat > "$SPY_DIR/{name}.prompt"
fi
echo "done by {name}"
"""


def test_the_child_environment_has_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIS_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("CIS_REMOTE_TOKEN", TOKEN)
    monkeypatch.setenv("CIS_DATA_DIR", "/somewhere")
    env = child_env({"CIS_OTHER_SECRET": "x", "PLAIN": "y"})
    assert PASSPHRASE not in env.values() and TOKEN not in env.values()
    assert env["CIS_DATA_DIR"] == "/somewhere" and env["PLAIN"] == "y"
    assert "CIS_OTHER_SECRET" not in env
    assert is_secret("CIS_API_KEY") and not is_secret("CIS_HTTP_PORT")


def test_tasks_and_agents_get_no_secret_and_no_prompt_on_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spies = tmp_path / "bin"
    spies.mkdir()
    for name in ("claude", "opencode", "codex", "aider"):
        script = spies / name
        script.write_text(SPY.format(name=name))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{spies}:{os.environ['PATH']}")
    monkeypatch.setenv("SPY_DIR", str(tmp_path))
    monkeypatch.setenv("CIS_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("CIS_REMOTE_TOKEN", TOKEN)
    with Node.open(tmp_path / "node") as node:
        node.memory.add("the private zebra-marker memory of the deploy runbook")
        tasks = [
            f'[[dag.tasks]]\nid = "{name}"\nagent = "{name}"\nprompt = "deploy runbook"\n'
            for name in ("claude", "opencode", "codex", "aider")
        ]
        tasks.append(f'[[dag.tasks]]\nid = "sh"\ncommand = "env > {tmp_path}/sh.env"\n')
        flow = tmp_path / "agents.toml"
        flow.write_text('[dag]\nname = "agents"\n' + "\n".join(tasks))
        run = node.dags.run(flow)
    assert run.status == "succeeded", [(t.task_id, t.error) for t in run.tasks]
    for name in ("claude", "opencode", "codex", "aider"):
        args = (tmp_path / f"{name}.args").read_text()
        assert "zebra-marker" not in args and "deploy runbook" not in args, name
        assert "zebra-marker" in (tmp_path / f"{name}.prompt").read_text(), name
    for dump in (*(tmp_path.glob("*.env")),):
        text = dump.read_text()
        assert PASSPHRASE not in text and TOKEN not in text, dump.name
    assert (tmp_path / "aider.mode").read_text().strip() == "600"
    assert not Path((tmp_path / "aider.path").read_text().strip()).exists()  # removed after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_detached_runner_gets_the_passphrase_on_stdin_only(tmp_path: Path) -> None:
    env = {**os.environ, "CIS_DATA_DIR": str(tmp_path / "node"), "CIS_PASSPHRASE": PASSPHRASE}
    subprocess.run([CIS, "init"], env=env, check=True, capture_output=True)
    flow = tmp_path / "peek.toml"
    flow.write_text(
        '[dag]\nname = "peek"\n[[dag.tasks]]\nid = "peek"\n'
        f'command = "cat /proc/$PPID/environ /proc/$PPID/cmdline > {tmp_path}/runner.txt"\n'
    )
    started = subprocess.run(
        [CIS, "dag", "run", str(flow), "--detach", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    run_id = json.loads(started.stdout)["run"]
    deadline = time.monotonic() + 60
    while True:
        status = subprocess.run(
            [CIS, "dag", "status", run_id, "--json"], env=env, capture_output=True, text=True
        )
        state = json.loads(status.stdout)["status"]
        if state not in ("pending", "running"):
            break
        assert time.monotonic() < deadline, "the detached run did not end"
        time.sleep(0.05)
    assert state == "succeeded"
    seen = (tmp_path / "runner.txt").read_bytes()
    assert b"dag" in seen and b"resume" in seen  # it is the runner's
    assert PASSPHRASE.encode() not in seen
