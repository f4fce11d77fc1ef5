"""The node's five shells behind one interface, for the shared behaviour table.

Each shell turns a table operation (add, get, update, delete, history, search, list,
import, export) into its own kind of call — a Python method, a `cis` process, an HTTP
request, an MCP tool call over stdio or over HTTP — and returns plain JSON data, or
raises `Failed` with the error code the shell reported. Shells also check their own
error channel: the CLI's exit code and the HTTP status must match the error's class.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.from_thread
import httpx
import msgspec

from cis.errors import CISError
from cis.memory.validate import ahead
from cis.model import Filter, Listing, Search
from cis.net.network import chosen
from cis.node import Node
from cis.shapes import convert

from ..conftest import CIS, LOCAL_SYNC


def _error_classes() -> dict[str, type[CISError]]:
    found: dict[str, type[CISError]] = {}
    stack: list[type[CISError]] = [CISError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return found


ERRORS = _error_classes()
CLUSTER = frozenset(
    {
        "peer_add",
        "peer_list",
        "peer_remove",
        "network_mode",
        "network_judge",
        "network_list",
        "network_review",
        "network_approve",
        "network_reject",
        "audit",
        "sync",
    }
)
OPS = (
    frozenset(
        {"add", "get", "update", "delete", "history", "search", "list", "import", "export", "node"}
    )
    | CLUSTER
)


class Failed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


def plain(value: Any) -> Any:
    """JSON data as any shell would give it (lists, not tuples)."""
    return json.loads(msgspec.json.encode(value))


def env_for(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir), **LOCAL_SYNC}
    env.pop("CIS_PASSPHRASE", None)
    return env


class PythonShell:
    name = "python"
    ops = OPS

    def __init__(self, node: Node):
        self.node = node
        self.access = node.access()

    def call(self, op: str, **args: Any) -> Any:
        a = self.access
        try:
            if op == "import":
                lines = b"".join(msgspec.json.encode(r) + b"\n" for r in args["records"])
                return len(a.import_data(lines, name="records").added)
            if op == "export":
                return [json.loads(line) for line in a.export(convert(args, Filter))]
            if op == "list":
                return plain(a.list(convert(args, Listing)))
            if op in ("get", "update", "delete", "history"):
                target = args.pop("id_or_key")
                method = {
                    "get": a.get,
                    "update": a.update,
                    "delete": a.delete,
                    "history": a.history,
                }
                return plain(method[op](target, **args))
            if op == "add":
                return plain(a.add(args.pop("text"), **args))
            if op == "search":
                return plain(a.search(convert(args, Search)))
            if op == "node":
                return plain(self.node.info())
            if op in CLUSTER:
                return plain(self._cluster(op, **args))
        except CISError as exc:
            raise Failed(exc.code, str(exc)) from exc
        raise AssertionError(f"unknown op {op}")

    def _cluster(self, op: str, **args: Any) -> Any:
        self.access.runs_the_node(op)
        node, network = self.node, self.node.network
        if op == "peer_add":
            return node.peers.add(args["did"], args["address"])
        if op == "peer_list":
            return node.peers.list()
        if op == "peer_remove":
            return node.peers.remove(args["did"])
        if op == "network_mode":
            mode = args.get("mode")
            return {"mode": network.mode() if mode is None else network.set_mode(mode)}
        if op == "network_judge":
            until = ahead(args.get("expires"), "expires")
            return network.judge(args["did"], args["verdict"], args.get("reason", ""), until)
        if op == "network_list":
            return network.trust()
        if op == "network_review":
            return network.review()
        if op == "network_approve":
            return network.approve(chosen(args.get("ids"), args.get("all", False)))
        if op == "network_reject":
            return {"rejected": network.reject(chosen(args.get("ids"), args.get("all", False)))}
        if op == "audit":
            return network.audit_log()
        return node.sync.now(args.get("peer"))


def _flags(args: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    argv: list[str] = []
    for name in names:
        value = args.get(name)
        if value is None:
            continue
        if name == "tags":
            for tag in value:
                argv += ["--tag", tag]
        elif name == "metadata":
            argv += ["--metadata", json.dumps(value)]
        else:
            argv += [f"--{name}", str(value)]
    return argv


class CliShell:
    name = "cli"
    ops = OPS

    def __init__(self, data_dir: Path):
        self.env = env_for(data_dir)
        self.scratch = Path(tempfile.mkdtemp(prefix="cis-cli-"))

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CIS, *argv], capture_output=True, text=True, env=self.env, timeout=120
        )

    def call(self, op: str, **args: Any) -> Any:
        filters = ("scope", "domain", "category", "tags", "since", "until")
        if op == "add":
            argv = ["memory", "add", args["text"]]
            argv += _flags(
                args, ("key", "scope", "domain", "category", "tags", "metadata", "thread")
            )
        elif op in ("get", "delete", "history"):
            argv = ["memory", op, args["id_or_key"], *_flags(args, ("scope",))]
        elif op == "update":
            argv = ["memory", "update", args["id_or_key"]]
            if args.get("text") is not None:
                argv.append(args["text"])
            argv += _flags(args, ("tags", "metadata", "scope"))
        elif op == "search":
            argv = ["memory", "search", args["query"], *_flags(args, ("limit", *filters))]
        elif op == "list":
            argv = ["memory", "list", *_flags(args, ("limit", "cursor", *filters))]
        elif op == "import":
            path = self.scratch / "import.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in args["records"]))
            argv = ["memory", "import", str(path)]
        elif op == "node":
            argv = ["node", "id"]
        elif op in CLUSTER:
            argv = self._cluster(op, args)
        elif op == "export":
            done = self.run("memory", "export", *_flags(args, filters))
            self._check(done)
            return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        else:
            raise AssertionError(f"unknown op {op}")
        done = self.run(*argv, "--json")
        self._check(done)
        result = json.loads(done.stdout)
        return result["imported"] if op == "import" else result

    @staticmethod
    def _cluster(op: str, args: dict[str, Any]) -> list[str]:
        batches = [str(i) for i in args.get("ids") or ()] + (["--all"] if args.get("all") else [])
        if op == "peer_add":
            return ["peer", "add", args["did"], args["address"]]
        if op in ("peer_list", "network_list", "network_review"):
            return op.split("_")
        if op == "peer_remove":
            return ["peer", "remove", args["did"]]
        if op == "network_mode":
            return ["network", "mode", *([args["mode"]] if args.get("mode") else [])]
        if op == "network_judge":
            return ["network", args["verdict"], args["did"], *_flags(args, ("reason", "expires"))]
        if op in ("network_approve", "network_reject"):
            return [*op.split("_"), *batches]
        if op == "audit":
            return ["network", "audit"]
        return ["sync", *_flags(args, ("peer",))]

    @staticmethod
    def _check(done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode == 0:
            return
        try:
            error = json.loads(done.stdout)["error"]
        except (ValueError, KeyError):
            error = {"code": "invalid_input", "message": done.stderr}  # usage error (typer)
        expected = ERRORS[error["code"]].exit_code
        assert done.returncode == expected, (
            f"exit {done.returncode}, {error['code']} has {expected}"
        )
        raise Failed(error["code"], error["message"])


@contextmanager
def served(data_dir: Path, **settings: str) -> Iterator[tuple[str, str, int]]:
    """A real `cis serve` on a free port: (base URL, token secret, pid). `settings` are
    CIS_* environment variables. On leaving, SIGTERM must end it cleanly (exit 0)."""
    env = {**env_for(data_dir), **settings}
    subprocess.run([CIS, "init"], env=env, check=True, capture_output=True)
    made = subprocess.run(
        [CIS, "token", "create", "tests", "--json"], env=env, check=True, capture_output=True
    )
    secret = json.loads(made.stdout)["secret"]
    process = subprocess.Popen(
        [CIS, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, f"cis serve did not start (exit {process.poll()})"
        yield url, secret, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, f"cis serve exited {code} on SIGTERM"


class HttpShell:
    name = "http"
    ops = OPS

    def __init__(self, url: str, secret: str):
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60
        )

    def call(self, op: str, **args: Any) -> Any:
        c = self.client
        target = quote(args.pop("id_or_key", ""), safe="/")
        params = {k: v for k, v in args.items() if v is not None}
        if "tags" in params and op in ("search", "list", "export"):
            params["tag"] = params.pop("tags")  # a query parameter, repeated
        if op == "add":
            answer = c.post("/v1/memories", json=params)
        elif op == "get":
            answer = c.get(f"/v1/memories/{target}", params=params)
        elif op == "update":
            scope = {"scope": params.pop("scope")} if "scope" in params else {}
            answer = c.patch(f"/v1/memories/{target}", json=params, params=scope)
        elif op == "delete":
            answer = c.delete(f"/v1/memories/{target}", params=params)
        elif op == "history":
            answer = c.get(f"/v1/memories/{target}/history", params=params)
        elif op == "search":
            params["q"] = params.pop("query")
            answer = c.get("/v1/search", params=params)
        elif op == "list":
            answer = c.get("/v1/memories", params=params)
        elif op == "import":
            lines = "".join(json.dumps(r) + "\n" for r in args["records"])
            answer = c.post(
                "/v1/import", content=lines, headers={"content-type": "application/x-ndjson"}
            )
        elif op == "node":
            answer = c.get("/v1/node")
        elif op in CLUSTER:
            return self._cluster(op, params)
        elif op == "export":
            answer = c.get("/v1/export", params=params)
            self._check(answer)
            return [json.loads(line) for line in answer.text.splitlines() if line.strip()]
        else:
            raise AssertionError(f"unknown op {op}")
        self._check(answer)
        result = answer.json()
        if op == "search":
            return result["hits"]
        return result["imported"] if op == "import" else result

    def _cluster(self, op: str, args: dict[str, Any]) -> Any:
        c = self.client
        batches = {"ids": args.get("ids"), "all": args.get("all", False)}
        inside = {
            "peer_list": "peers",
            "network_review": "held",
            "audit": "audit",
            "sync": "reports",
        }
        if op == "peer_add":
            answer = c.post("/v1/peers", json=args)
        elif op == "peer_list":
            answer = c.get("/v1/peers")
        elif op == "peer_remove":
            answer = c.delete(f"/v1/peers/{args['did']}")
        elif op == "network_mode":
            mode = args.get("mode")
            if mode is None:
                answer = c.get("/v1/network")
                self._check(answer)
                return {"mode": answer.json()["mode"]}
            answer = c.put("/v1/network/mode", json={"mode": mode})
        elif op == "network_judge":
            answer = c.post("/v1/network/entries", json=args)
        elif op == "network_list":
            answer = c.get("/v1/network")
        elif op == "network_review":
            answer = c.get("/v1/network/held")
        elif op in ("network_approve", "network_reject"):
            answer = c.post(f"/v1/network/{op.split('_')[1]}", json=batches)
        elif op == "audit":
            answer = c.get("/v1/network/audit")
        else:
            answer = c.post("/v1/sync", params=args)
        self._check(answer)
        result = answer.json()
        return result[inside[op]] if op in inside else result

    @staticmethod
    def _check(answer: httpx.Response) -> None:
        if answer.status_code < 400:
            return
        error = answer.json()["error"]
        expected = ERRORS[error["code"]].http_status
        assert answer.status_code == expected, f"status {answer.status_code} for {error}"
        raise Failed(error["code"], error["message"])


_TOOL_ERROR = re.compile(r"^([a-z_]+): ")


class McpShell:
    """An MCP client of the `mcp` SDK, driven from sync test code through a portal."""

    ops = OPS - {"import", "export", "node"} - CLUSTER  # no such tools

    def __init__(self, name: str, client: Any, portal: anyio.from_thread.BlockingPortal):
        self.name = name
        self.client = client
        self.portal = portal

    def call(self, op: str, **args: Any) -> Any:
        args = {k: v for k, v in args.items() if v is not None}
        result = self.portal.call(self.client.call_tool, f"memory_{op}", args)
        if result.is_error:
            text = result.content[0].text
            found = _TOOL_ERROR.search(text)
            code = found.group(1) if found else "?"
            raise Failed(code, text)
        data = result.structured_content
        if op == "search":
            return data["hits"]
        return data["history"] if op == "history" else data


@contextmanager
def mcp_client(server: Any, name: str) -> Iterator[McpShell]:
    from mcp import Client

    with anyio.from_thread.start_blocking_portal() as portal:
        client = Client(server)
        with portal.wrap_async_context_manager(client) as connected:
            yield McpShell(name, connected, portal)


def stdio_server(data_dir: Path) -> Any:
    from mcp.client.stdio import StdioServerParameters

    subprocess.run([CIS, "init"], env=env_for(data_dir), check=True, capture_output=True)
    return StdioServerParameters(command=CIS, args=["mcp"], env=env_for(data_dir))


def http_server(url: str, secret: str) -> Any:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    return streamable_http_client(f"{url}/mcp", http_client=http)
