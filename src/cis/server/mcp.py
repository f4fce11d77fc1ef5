"""The MCP server (official `mcp` SDK): memory tools, resources and a recall prompt.

The same server runs over stdio (`cis mcp`, one process per agent) and over streamable
HTTP at /mcp (`cis serve`, behind the token gate). Each tool is one call into the Python
API through `Access`; CIS errors come back as tool errors that say what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import msgspec
from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from .. import __version__
from ..access.limits import Access
from ..errors import CISError, Unauthorized
from ..model import CATEGORIES
from ..node import Node
from .middleware import TOKEN_STATE

INSTRUCTIONS = """\
CIS is the user's long-term memory, kept on their own machine. Before answering about \
the user's projects, preferences, people or past decisions, call memory_search. When \
you learn something worth keeping across sessions (a fact, preference, decision or \
result), store it with memory_add: one self-contained statement per memory, with a key \
when it is a setting that later replaces itself. Scopes: global, project/<name>, \
agent/<name>, session/<id>."""

READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
ADD = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
CHANGE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)

ScopeArg = Annotated[
    str | None,
    Field(description="global, project/<name>, agent/<name> or session/<id>; omit for the default"),
]
DomainArg = Annotated[str | None, Field(description="private (this device) or public (synced)")]
CategoryArg = Annotated[str | None, Field(description=f"one of: {', '.join(CATEGORIES)}")]
TagsArg = Annotated[list[str] | None, Field(description="tags; a search needs all of them")]
WhenArg = Annotated[str | None, Field(description="ISO-8601 time, e.g. 2026-01-31T12:00:00Z")]

Caller = Callable[[Context], Access]


def result(value: Any, wrap: str | None = None) -> CallToolResult:
    """A tool result: compact JSON text for the model, the same data structured.

    (The SDK's own conversion indents its JSON, which costs the model's context.)"""
    data = msgspec.to_builtins(value)
    if wrap is not None:
        data = {wrap: data}
    text = msgspec.json.encode(data).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


@contextmanager
def tool_errors(kind: type[Exception] = ToolError) -> Iterator[None]:
    """CIS errors as MCP tool (or resource) errors: '<code>: <what was wrong and what
    to do>'."""
    try:
        yield
    except CISError as exc:
        raise kind(f"{exc.code}: {exc}") from exc


def stdio_caller(node: Node) -> Caller:
    """A local process the user started: no token, no limits."""
    access = node.access()
    return lambda ctx: access


def http_caller(node: Node) -> Caller:
    """The caller of an HTTP request, as the token gate verified it (fails closed)."""

    def caller(ctx: Context) -> Access:
        request = ctx.request_context.request
        token = getattr(getattr(request, "state", None), TOKEN_STATE, None)
        if token is None:
            raise Unauthorized("this MCP endpoint needs a bearer token")
        return node.access(token)

    return caller


def build(node: Node, caller: Caller) -> MCPServer:
    server: MCPServer = MCPServer(
        "cis",
        title="CIS memory",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    _memory_tools(server, caller)
    _reading_tools(server, node, caller)
    _dag_tools(server, caller)
    _resources(server, node, caller)
    _prompts(server, caller)
    return server


def _memory_tools(server: MCPServer, caller: Caller) -> None:
    @server.tool(annotations=ADD)
    def memory_add(
        ctx: Context,
        text: Annotated[str, Field(description="the memory: one self-contained statement")],
        key: Annotated[
            str | None,
            Field(description="optional name, unique in its scope, e.g. 'editor/theme'"),
        ] = None,
        scope: ScopeArg = None,
        domain: Annotated[str, Field(description="private or public")] = "private",
        category: Annotated[str, Field(description=f"one of: {', '.join(CATEGORIES)}")] = "context",
        tags: Annotated[list[str] | None, Field(description="short labels")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="any JSON object")] = None,
    ) -> CallToolResult:
        """Store a memory for later sessions. Returns it with its id. A key already used
        in the scope is a conflict: update that memory instead."""
        with tool_errors():
            added = caller(ctx).add(
                text,
                key=key,
                scope=scope,
                domain=domain,
                category=category,
                tags=tags or (),
                metadata=metadata,
            )
            return result(added)

    @server.tool(annotations=CHANGE)
    def memory_update(
        ctx: Context,
        id: Annotated[str, Field(description="the memory's id (or key, with scope)")],
        text: Annotated[str | None, Field(description="new text (re-embedded)")] = None,
        tags: Annotated[list[str] | None, Field(description="replaces the tags")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="replaces it")] = None,
        scope: ScopeArg = None,
    ) -> CallToolResult:
        """Change a memory's text, tags or metadata; the old version stays in its history."""
        with tool_errors():
            changed = caller(ctx).update(id, text, tags=tags, metadata=metadata, scope=scope)
            return result(changed)

    @server.tool(annotations=CHANGE)
    def memory_delete(
        ctx: Context,
        id_or_key: Annotated[str, Field(description="the memory's id, or its key")],
        scope: ScopeArg = None,
    ) -> CallToolResult:
        """Delete a memory; it is no longer found, but its history is kept."""
        with tool_errors():
            return result(caller(ctx).delete(id_or_key, scope=scope))


def _reading_tools(server: MCPServer, node: Node, caller: Caller) -> None:
    @server.tool(annotations=READ)
    def memory_search(
        ctx: Context,
        query: Annotated[str, Field(description="what you want to know, in plain words")],
        limit: Annotated[int, Field(ge=1, le=100, description="how many results")] = 10,
        scope: ScopeArg = None,
        domain: DomainArg = None,
        category: CategoryArg = None,
        tags: TagsArg = None,
        since: WhenArg = None,
        until: WhenArg = None,
    ) -> CallToolResult:
        """Find memories by meaning and by words, best first. Each hit has `score` in
        [0, 1] and why it matched: `text_score` (words), `vector_score` (meaning)."""
        with tool_errors():
            hits = caller(ctx).search(
                query,
                limit=limit,
                scope=scope,
                domain=domain,
                category=category,
                tags=tags,
                since=since,
                until=until,
            )
            return result(hits, "hits")

    @server.tool(annotations=READ)
    def memory_get(
        ctx: Context,
        id_or_key: Annotated[str, Field(description="the memory's id, or its key")],
        scope: ScopeArg = None,
    ) -> CallToolResult:
        """One memory by id, or by key (keys are looked up in `scope`, default global)."""
        with tool_errors():
            return result(caller(ctx).get(id_or_key, scope=scope))

    @server.tool(annotations=READ)
    def memory_list(
        ctx: Context,
        scope: ScopeArg = None,
        domain: DomainArg = None,
        category: CategoryArg = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="page size")] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of the last page")] = None,
    ) -> CallToolResult:
        """Memories in the order they were added, a page at a time."""
        with tool_errors():
            page = caller(ctx).list(
                limit=limit, cursor=cursor, scope=scope, domain=domain, category=category
            )
            return result({"items": page.items, "next_cursor": page.next_cursor})

    @server.tool(annotations=READ)
    def memory_history(
        ctx: Context,
        id: Annotated[str, Field(description="the memory's id (or key, with scope)")],
        scope: ScopeArg = None,
    ) -> CallToolResult:
        """Every add, update and delete of a memory, oldest first (deleted ones too)."""
        with tool_errors():
            return result(caller(ctx).history(id, scope=scope), "history")

    @server.tool(annotations=READ)
    def node_status(ctx: Context) -> CallToolResult:
        """The node's counts, index state, embedding model and cache statistics."""
        with tool_errors():
            caller(ctx)
            return result(node.status())


RUN = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)


def _dag_tools(server: MCPServer, caller: Caller) -> None:
    @server.tool(annotations=RUN)
    def dag_run(
        ctx: Context,
        file: Annotated[
            str | None, Field(description="path of a workflow file on the node")
        ] = None,
        workflow: Annotated[
            str | dict[str, Any] | None,
            Field(description="or the workflow itself: TOML, YAML or JSON text, or an object"),
        ] = None,
        format: Annotated[str, Field(description="toml, yaml or json (for workflow)")] = "toml",
        inputs: Annotated[
            dict[str, str] | None, Field(description="values for {{ inputs.NAME }}")
        ] = None,
        concurrency: Annotated[int | None, Field(ge=1, le=64, description="tasks at once")] = None,
    ) -> CallToolResult:
        """Run a DAG workflow of shell and agent tasks on the node, in the background.
        Returns the pending run; follow it with dag_status. Tasks run commands on the
        node's machine."""
        if isinstance(workflow, dict):
            workflow, format = json.dumps(workflow), "json"
        with tool_errors():
            run = caller(ctx).dags.submit(
                file=file, workflow=workflow, format=format, inputs=inputs, concurrency=concurrency
            )
            return result(run)

    @server.tool(annotations=READ)
    def dag_status(
        ctx: Context,
        run_id: Annotated[str | None, Field(description="a run id; omit for the latest")] = None,
    ) -> CallToolResult:
        """A workflow run and each task's state, attempts, exit code, output and error."""
        with tool_errors():
            return result(caller(ctx).dags.status(run_id))

    @server.tool(annotations=READ)
    def dag_list(ctx: Context, limit: Annotated[int, Field(ge=1, le=200)] = 20) -> CallToolResult:
        """Recent workflow runs, newest first."""
        with tool_errors():
            runs = caller(ctx).dags.list(limit)
            for run in runs:
                run.tasks = []
            return result(runs, "runs")

    @server.tool(annotations=CHANGE)
    def dag_cancel(
        ctx: Context, run_id: Annotated[str, Field(description="the run to stop")]
    ) -> CallToolResult:
        """Stop a running workflow: its tasks' processes are killed within a second."""
        with tool_errors():
            return result(caller(ctx).dags.cancel(run_id))


def _resources(server: MCPServer, node: Node, caller: Caller) -> None:
    @server.resource("cis://status", mime_type="application/json")
    def status() -> str:
        """The node's status as JSON (over HTTP, the token gate has already let it in)."""
        with tool_errors(ResourceError):
            return msgspec.json.encode(node.status()).decode()

    @server.resource("cis://memory/{id}", mime_type="application/json")
    def memory(id: str, ctx: Context) -> str:
        """One memory as JSON, by id."""
        with tool_errors(ResourceError):
            return msgspec.json.encode(caller(ctx).get(id)).decode()


def _prompts(server: MCPServer, caller: Caller) -> None:
    @server.prompt()
    def recall(
        ctx: Context,
        task: Annotated[str, Field(description="the task you are about to work on")],
        limit: Annotated[int, Field(ge=1, le=50)] = 8,
        scope: ScopeArg = None,
    ) -> list[UserMessage]:
        """Load the memories relevant to a task into the conversation."""
        with tool_errors():
            hits = caller(ctx).search(task, limit=limit, scope=scope)
        if not hits:
            body = "Nothing in memory relates to this task yet."
        else:
            lines = [f"- [{h.memory.scope}, {h.memory.category}] {h.memory.text}" for h in hits]
            body = "What I remember that may bear on this task:\n" + "\n".join(lines)
        return [UserMessage(f"{body}\n\nThe task: {task}")]
