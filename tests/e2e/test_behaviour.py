"""One table of behaviours, run against every shell: Python API, CLI, HTTP, MCP (stdio, HTTP).

A step is an operation with arguments and what must come of it: a check on the result,
or an error code. Steps run in order on a fresh node per shell; `save` keeps a result
for later steps (`Ref`). A shell that lacks an operation (MCP has no import/export
tools) skips its steps, and the table is written so that later steps do not depend on
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cis import Node
from cis.net.identity import Identity

from .shells import (
    CliShell,
    Failed,
    HttpShell,
    PythonShell,
    http_server,
    mcp_client,
    served,
    stdio_server,
)


@dataclass(frozen=True)
class Ref:
    name: str
    field: str = "id"


Check = Callable[[Any, dict[str, Any]], object]


@dataclass(frozen=True)
class Step:
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    check: Check | None = None
    error: str | None = None
    save: str | None = None


def ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["memory"]["id"] for h in hits]


def is_(name: str) -> Check:
    """The result is the saved memory `name` (same id)."""
    return lambda got, saved: got["id"] == saved[name]["id"]


FAR_FUTURE, FAR_PAST = "2999-01-01T00:00:00Z", "1999-01-01T00:00:00Z"
PEER, STRANGER = (Identity(bytes([n]) * 32).did for n in (1, 2))  # nodes never started

TABLE: list[Step] = [
    # add
    Step(
        "add",
        {
            "text": "Billing runs on PostgreSQL 16",
            "key": "project/db",
            "category": "fact",
            "tags": ["db"],
        },
        lambda m, _: (
            (m["key"], m["scope"], m["tags"], m["version"], m["category"])
            == ("project/db", "global", ["db"], 1, "fact")
            and m["origin"].startswith("did:key:z6Mk")
            and m["hlc"] >> 16 == m["updated_at"]
        ),
        save="db",
    ),
    # this node's identity: the origin of what it writes
    Step("node", {}, lambda info, s: info["did"] == s["db"]["origin"]),
    Step(
        "add",
        {
            "text": "Alice prefers dark mode in every editor",
            "scope": "agent/claude",
            "domain": "public",
            "category": "preference",
            "tags": ["ui"],
            "thread": "editor setup",
        },
        lambda m, _: (
            (m["scope"], m["domain"], m["thread"]) == ("agent/claude", "public", "editor setup")
        ),
        save="alice",
    ),
    Step(
        "add",
        {
            "text": "The deploy script lives in tools/deploy.sh",
            "scope": "project/ops",
            "category": "note",
            "metadata": {"source": "wiki", "n": 1},
        },
        lambda m, _: m["metadata"] == {"source": "wiki", "n": 1},
        save="deploy",
    ),
    Step("add", {"text": "another", "key": "project/db"}, error="conflict"),
    Step("add", {"text": "   "}, error="invalid_input"),
    Step("add", {"text": "x", "scope": "nowhere"}, error="invalid_input"),
    Step("add", {"text": "x", "category": "gossip"}, error="invalid_input"),
    # get by key and by id
    Step("get", {"id_or_key": "project/db"}, is_("db")),
    Step("get", {"id_or_key": Ref("alice")}, is_("alice")),
    Step("get", {"id_or_key": Ref("deploy")}, lambda m, _: m["text"].endswith("deploy.sh")),
    Step("get", {"id_or_key": "project/db", "scope": "agent/claude"}, error="not_found"),
    Step("get", {"id_or_key": "no-such-thing"}, error="not_found"),
    # search with each filter
    Step(
        "search",
        {"query": "which database does billing use", "limit": 3},
        lambda hits, s: ids(hits)[0] == s["db"]["id"] and all(0 <= h["score"] <= 1 for h in hits),
    ),
    Step(
        "search",
        {"query": "dark mode editor", "scope": "agent/claude"},
        lambda hits, s: ids(hits) == [s["alice"]["id"]],
    ),
    Step(
        "search",
        {"query": "editor dark mode billing deploy", "domain": "public"},
        lambda hits, s: ids(hits) == [s["alice"]["id"]],
    ),
    Step(
        "search",
        {"query": "where is the deploy script", "category": "note"},
        lambda hits, s: ids(hits) == [s["deploy"]["id"]],
    ),
    Step(
        "search",
        {"query": "editor billing", "tags": ["db"]},
        lambda hits, s: ids(hits) == [s["db"]["id"]],
    ),
    Step("search", {"query": "billing", "since": FAR_FUTURE}, lambda hits, _: hits == []),
    Step("search", {"query": "billing", "until": FAR_PAST}, lambda hits, _: hits == []),
    Step("search", {"query": "billing", "limit": 0}, error="invalid_input"),
    Step("search", {"query": "billing", "scope": "bad scope"}, error="invalid_input"),
    # update and history
    Step(
        "update",
        {"id_or_key": Ref("db"), "text": "Billing runs on PostgreSQL 17"},
        lambda m, s: (
            (m["id"], m["version"], m["text"])
            == (s["db"]["id"], 2, "Billing runs on PostgreSQL 17")
        ),
    ),
    Step(
        "update",
        {"id_or_key": Ref("deploy"), "tags": ["ops", "deploy"], "metadata": {"source": "runbook"}},
        lambda m, _: (m["tags"], m["metadata"]) == (["ops", "deploy"], {"source": "runbook"}),
    ),
    Step("update", {"id_or_key": "no-such-thing", "text": "x"}, error="not_found"),
    Step("update", {"id_or_key": Ref("db"), "text": ""}, error="invalid_input"),
    Step(
        "history",
        {"id_or_key": Ref("db")},
        lambda h, _: (
            [(e["op"], e["version"]) for e in h] == [("add", 1), ("update", 2)]
            and h[-1]["text"].endswith("17")
        ),
    ),
    Step("history", {"id_or_key": "no-such-thing"}, error="not_found"),
    Step(
        "search",
        {"query": "postgresql 17"},
        lambda hits, s: ids(hits)[0] == s["db"]["id"],
    ),
    # list, filters and pages
    Step(
        "list",
        {"limit": 2},
        lambda page, s: (
            [m["id"] for m in page["items"]] == [s["db"]["id"], s["alice"]["id"]]
            and page["next_cursor"] == s["alice"]["id"]
        ),
        save="page1",
    ),
    Step(
        "list",
        {"limit": 2, "cursor": Ref("page1", "next_cursor")},
        lambda page, s: (
            [m["id"] for m in page["items"]] == [s["deploy"]["id"]] and page["next_cursor"] is None
        ),
    ),
    Step(
        "list",
        {"scope": "project/ops"},
        lambda page, s: [m["id"] for m in page["items"]] == [s["deploy"]["id"]],
    ),
    Step("list", {"category": "preference"}, lambda p, s: p["items"][0]["id"] == s["alice"]["id"]),
    Step("list", {"limit": 5000}, error="invalid_input"),
    # delete
    Step("delete", {"id_or_key": "alice"}, error="not_found"),
    Step("delete", {"id_or_key": Ref("alice")}, is_("alice")),
    Step("get", {"id_or_key": Ref("alice")}, error="not_found"),
    Step("delete", {"id_or_key": Ref("alice")}, error="not_found"),
    Step(
        "history",
        {"id_or_key": Ref("alice")},
        lambda h, _: [e["op"] for e in h] == ["add", "delete"],
    ),
    Step(
        "search",
        {"query": "dark mode editor"},
        lambda hits, s: s["alice"]["id"] not in ids(hits),
    ),
    # import and export (not MCP)
    Step(
        "export",
        {},
        lambda rows, s: sorted(r["id"] for r in rows) == sorted([s["db"]["id"], s["deploy"]["id"]]),
    ),
    Step(
        "export",
        {"scope": "project/ops"},
        lambda rows, s: [r["id"] for r in rows] == [s["deploy"]["id"]],
    ),
    Step(
        "import",
        {"records": [{"text": "imported one", "tags": ["imp"]}, {"text": "imported two"}]},
        lambda count, _: count == 2,
    ),
    Step(
        "import",
        {"records": [{"text": "fine"}, {"text": ""}, {"txt": "typo"}]},
        error="invalid_input",
    ),
    Step("export", {}, lambda rows, _: len(rows) == 4),
    # the cluster: peers, trust lists, quarantine, audit, sync (not MCP)
    Step("peer_list", {}, lambda peers, _: peers == []),
    Step(
        "peer_add",
        {"did": PEER, "address": "127.0.0.1:9"},
        lambda p, _: (p["did"], p["address"], p["last_seen"]) == (PEER, "127.0.0.1:9", None),
    ),
    Step("peer_add", {"did": "did:key:zNotAKey", "address": "host:7677"}, error="invalid_input"),
    Step("peer_add", {"did": PEER, "address": "no port"}, error="invalid_input"),
    Step("peer_list", {}, lambda peers, _: [p["did"] for p in peers] == [PEER]),
    Step("network_mode", {}, lambda m, _: m == {"mode": "whitelist"}),
    Step("network_mode", {"mode": "quarantine"}, lambda m, _: m == {"mode": "quarantine"}),
    Step("network_mode", {"mode": "chaos"}, error="invalid_input"),
    Step(
        "network_judge",
        {"did": STRANGER, "verdict": "deny", "reason": "lost laptop", "expires": "30d"},
        lambda e, _: (
            (e["verdict"], e["reason"]) == ("deny", "lost laptop")
            and e["expires_at"] > e["created_at"]
        ),
    ),
    Step("network_judge", {"did": STRANGER, "verdict": "maybe"}, error="invalid_input"),
    Step(
        "network_judge",
        {"did": STRANGER, "verdict": "deny", "expires": "soon"},
        error="invalid_input",
    ),
    Step(
        "network_list",
        {},
        lambda t, _: (
            t["mode"] == "quarantine"
            and [(e["did"], e["verdict"]) for e in t["entries"]] == [(STRANGER, "deny")]
        ),
    ),
    Step("network_review", {}, lambda held, _: held == []),
    Step("network_approve", {"ids": [7]}, error="not_found"),
    Step("network_approve", {}, error="invalid_input"),
    Step(
        "network_approve",
        {"all": True},
        lambda done, _: done["approved"] == [] and done["received"]["ops"] == 0,
    ),
    Step("network_reject", {"all": True}, lambda done, _: done == {"rejected": []}),
    Step("sync", {"peer": STRANGER}, error="not_found"),
    Step(
        "audit",
        {},
        lambda log, _: (
            [(e["event"], e["did"]) for e in log]
            == [("added", PEER), ("mode", "-"), ("deny", STRANGER)]
        ),
    ),
    Step("peer_remove", {"did": PEER}, lambda p, _: p["did"] == PEER),
    Step("peer_remove", {"did": PEER}, error="not_found"),
    Step("network_mode", {"mode": "solitary"}, lambda m, _: m == {"mode": "solitary"}),
    Step("sync", {}, error="forbidden"),
]


def resolve(value: Any, saved: dict[str, Any]) -> Any:
    if isinstance(value, Ref):
        return saved[value.name][value.field]
    if isinstance(value, dict):
        return {k: resolve(v, saved) for k, v in value.items()}
    return value


def run_table(shell: Any) -> None:
    saved: dict[str, Any] = {}
    for number, step in enumerate(TABLE, 1):
        if step.op not in shell.ops:
            continue
        where = f"{shell.name} step {number} ({step.op} {step.args})"
        args = resolve(step.args, saved)
        try:
            got = shell.call(step.op, **args)
        except Failed as exc:
            assert step.error == exc.code, f"{where}: failed with {exc}"
            continue
        assert step.error is None, f"{where}: expected {step.error}, got {got}"
        if step.check is not None:
            assert step.check(got, saved), f"{where}: unexpected result {got}"
        if step.save:
            saved[step.save] = got


SHELLS = ["python", "cli", "http", "mcp-stdio", "mcp-http"]


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    data_dir = tmp_path / "node"
    kind = request.param
    if kind == "python":
        with Node.open(data_dir) as node:
            yield PythonShell(node)
    elif kind == "cli":
        CliShell(data_dir).run("init")
        yield CliShell(data_dir)
    elif kind == "http":
        with served(data_dir) as (url, secret, _):
            yield HttpShell(url, secret)
    elif kind == "mcp-stdio":
        with mcp_client(stdio_server(data_dir), kind) as client:
            yield client
    else:
        with served(data_dir) as (url, secret, _), mcp_client(http_server(url, secret), kind) as c:
            yield c


def test_behaviour_table(shell: Any) -> None:
    run_table(shell)
