"""Real MCP clients (the `mcp` SDK) against `cis mcp` over stdio and `cis serve` at /mcp."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from ..conftest import CIS
from .shells import env_for, http_server, served, stdio_server

EXPECTED_TOOLS = {
    "dag_run",
    "dag_status",
    "dag_list",
    "dag_cancel",
    "memory_add",
    "memory_search",
    "memory_get",
    "memory_update",
    "memory_delete",
    "memory_list",
    "memory_history",
    "node_status",
}


def text_of(result: Any) -> str:
    return str(result.content[0].text)


def test_tools_resources_and_prompt_over_stdio(data_dir: Path) -> None:
    async def main() -> None:
        async with Client(stdio_server(data_dir)) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == EXPECTED_TOOLS
            for tool in tools.values():
                assert len(tool.description or "") > 30, tool.name
                assert tool.input_schema["type"] == "object"
                assert tool.annotations is not None
            hints = {n: t.annotations for n, t in tools.items()}
            assert hints["memory_search"].read_only_hint is True
            assert hints["memory_add"].read_only_hint is False
            assert hints["memory_delete"].destructive_hint is True
            assert hints["memory_delete"].idempotent_hint is True
            query = tools["memory_search"].input_schema["properties"]["query"]
            assert query["type"] == "string" and query["description"]

            added = await client.call_tool(
                "memory_add", {"text": "The staging database is on port 5433", "tags": ["db"]}
            )
            assert not added.is_error
            memory = added.structured_content
            assert json.loads(text_of(added)) == memory  # compact JSON, same data

            found = await client.call_tool("memory_search", {"query": "staging database port"})
            assert found.structured_content["hits"][0]["memory"]["id"] == memory["id"]

            status = await client.read_resource("cis://status")
            assert json.loads(status.contents[0].text)["memories"] == 1
            one = await client.read_resource(f"cis://memory/{memory['id']}")
            assert json.loads(one.contents[0].text)["text"].startswith("The staging")
            with pytest.raises(MCPError):
                await client.read_resource("cis://memory/no-such-id")

            prompt = await client.get_prompt("recall", {"task": "connect to the staging database"})
            assert "port 5433" in prompt.messages[0].content.text

    anyio.run(main)


def test_bad_calls_are_tool_errors_and_the_server_keeps_serving(data_dir: Path) -> None:
    async def main() -> None:
        async with Client(stdio_server(data_dir)) as client:
            cases = [
                ("memory_get", {"id_or_key": "missing"}, "not_found: no memory 'missing'"),
                ("memory_add", {"text": "x" * 70_000}, "invalid_input: text is 70000 bytes"),
                ("memory_add", {"text": 5}, "invalid_input: text must be a string, not a whole"),
                ("memory_add", {"text": "x", "tags": "a"}, "invalid_input: tags must be a list"),
                ("memory_add", {"text": "x", "tag": ["a"]}, "invalid_input: memory_add takes no"),
                ("memory_add", {"text": "x", "scope": "nowhere"}, "invalid_input: unknown scope"),
                ("memory_add", {"text": "a\x00b"}, "invalid_input: text holds a NUL"),
                ("memory_search", {"query": ""}, "invalid_input: query is empty"),
                ("memory_search", {"query": "x", "limit": 0}, "invalid_input: limit must be"),
                ("memory_search", {"query": "x", "embedding": [0.1]}, "invalid_input: memory_s"),
                ("memory_update", {"id_or_key": "missing", "text": "y"}, "not_found"),
                ("memory_list", {"cursor": "nope"}, "invalid_input: cursor"),
            ]
            for name, args, expect in cases:
                result = await client.call_tool(name, args)
                assert result.is_error, name
                assert text_of(result).startswith(expect), text_of(result)
            alive = await client.call_tool("node_status", {})
            assert not alive.is_error and alive.structured_content["memories"] == 0

    anyio.run(main)


def test_stdio_and_http_clients_at_once_share_one_node(data_dir: Path) -> None:
    """Two agents' stdio processes and one HTTP session, all open together, each
    writing concurrently; every one then finds what all of them stored."""
    with served(data_dir) as (url, secret, _):

        async def main() -> None:
            async with (
                Client(stdio_server(data_dir)) as first,
                Client(stdio_server(data_dir)) as second,
                Client(http_server(url, secret)) as third,
            ):
                clients = [first, second, third]
                facts = [f"zebra fact number {n} from client {n}" for n in range(3)]

                async def write(client: Client, text: str) -> None:
                    for i in range(5):
                        result = await client.call_tool("memory_add", {"text": f"{text} #{i}"})
                        assert not result.is_error, text_of(result)

                async with anyio.create_task_group() as group:
                    for client, fact in zip(clients, facts, strict=True):
                        group.start_soon(write, client, fact)
                for client in clients:
                    found = await client.call_tool(
                        "memory_search", {"query": "zebra fact", "limit": 20}
                    )
                    texts = {h["memory"]["text"] for h in found.structured_content["hits"]}
                    assert len(texts) == 15, texts

        anyio.run(main)


def test_http_mcp_applies_the_token_limits(data_dir: Path) -> None:
    with served(data_dir) as (url, secret, _):
        env = env_for(data_dir)
        made = subprocess.run(
            [CIS, "token", "create", "agent", "--scope", "agent/bot", "--json"],
            env=env,
            capture_output=True,
            check=True,
        )
        scoped = json.loads(made.stdout)["secret"]

        async def main() -> None:
            async with Client(http_server(url, secret)) as full:
                outside = await full.call_tool("memory_add", {"text": "global secret"})
                outside_id = outside.structured_content["id"]
            async with Client(http_server(url, scoped)) as agent:
                mine = await agent.call_tool("memory_add", {"text": "bot note"})
                assert mine.structured_content["scope"] == "agent/bot"
                hidden = await agent.call_tool("memory_get", {"id_or_key": outside_id})
                assert hidden.is_error and "not_found" in text_of(hidden)
                other = await agent.call_tool("memory_list", {"scope": "global"})
                assert other.is_error and "forbidden" in text_of(other)
                seen = await agent.call_tool("memory_search", {"query": "secret note"})
                scopes = {h["memory"]["scope"] for h in seen.structured_content["hits"]}
                assert scopes <= {"agent/bot"}

        anyio.run(main)


def test_workflow_tools_over_stdio(data_dir: Path) -> None:
    async def main() -> None:
        async with Client(stdio_server(data_dir)) as client:
            flow = '{"dag": {"name": "m", "tasks": [{"id": "t", "command": "echo via mcp"}]}}'
            started = await client.call_tool("dag_run", {"workflow": flow, "format": "json"})
            assert not started.is_error, text_of(started)
            run_id = started.structured_content["id"]
            for _ in range(300):
                status = await client.call_tool("dag_status", {"run_id": run_id})
                if status.structured_content["status"] in ("succeeded", "failed"):
                    break
                await anyio.sleep(0.1)
            run = status.structured_content
            assert run["status"] == "succeeded" and run["tasks"][0]["output"] == "via mcp\n"
            listed = await client.call_tool("dag_list", {})
            assert [r["id"] for r in listed.structured_content["runs"]] == [run_id]
            late = await client.call_tool("dag_cancel", {"run_id": run_id})
            assert late.is_error and "not running" in text_of(late)
            neither = await client.call_tool("dag_run", {})
            assert neither.is_error and "either file" in text_of(neither)

    anyio.run(main)


def test_cis_mcp_before_cis_init_makes_the_node(data_dir: Path) -> None:
    from mcp.client.stdio import StdioServerParameters

    fresh = StdioServerParameters(command=CIS, args=["mcp"], env=env_for(data_dir))

    async def main() -> None:
        async with Client(fresh) as client:
            status = await client.call_tool("node_status", {})
            assert not status.is_error and status.structured_content["memories"] == 0

    anyio.run(main)
    assert (data_dir / "cis.db").stat().st_size > 0


READ_TOOLS = {"memory_search", "memory_get", "memory_list", "memory_history", "node_status"}
MEMORY_TOOLS = READ_TOOLS | {"memory_add", "memory_update", "memory_delete"}


def test_a_token_is_offered_only_the_tools_it_may_call(data_dir: Path) -> None:
    with served(data_dir) as (url, secret, _):
        env = env_for(data_dir)

        def token(name: str, *flags: str) -> str:
            made = subprocess.run(
                [CIS, "token", "create", name, *flags, "--json"],
                env=env,
                capture_output=True,
                check=True,
            )
            return str(json.loads(made.stdout)["secret"])

        offers = {
            secret: EXPECTED_TOOLS,
            token("reader", "--read-only"): READ_TOOLS,
            token("scoped", "--scope", "project/x"): MEMORY_TOOLS,
        }

        async def main() -> None:
            for key, expected in offers.items():
                async with Client(http_server(url, key)) as client:
                    offered = {t.name for t in (await client.list_tools()).tools}
                    assert offered == expected
                    for hidden in sorted(EXPECTED_TOOLS - expected)[:2]:
                        answer = await client.call_tool(hidden, {})
                        assert answer.is_error and text_of(answer).startswith("forbidden: ")

        anyio.run(main)


def test_tool_results_and_descriptions_are_lean(data_dir: Path) -> None:
    async def main() -> None:
        async with Client(stdio_server(data_dir)) as client:
            for tool in (await client.list_tools()).tools:
                assert "\n" not in (tool.description or ""), tool.name
                for name, field in tool.input_schema["properties"].items():
                    assert field.get("description"), (tool.name, name)
            await client.call_tool("memory_add", {"text": "ferrets sleep eighteen hours"})
            found = await client.call_tool(
                "memory_search",
                {"query": "how long do ferrets sleep", "mode": "text", "since": 0},
            )
            assert not found.is_error, text_of(found)
            hit = found.structured_content["hits"][0]
            for name in ("score", "text_score"):
                assert round(hit[name], 3) == hit[name]
            assert '"score":' in text_of(found)
            vector = await client.call_tool("memory_search", {"query": "ferrets", "mode": "vector"})
            assert not vector.is_error, text_of(vector)

    anyio.run(main)
