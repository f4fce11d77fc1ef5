"""The MCP server (official `mcp` SDK): memory tools, resources and a recall prompt.

The same server runs over stdio (`cis mcp`, one process per agent) and over streamable
HTTP at /mcp (`cis serve`, behind the token gate). Each tool's arguments are one of the
API's structures (Search, Listing, the HTTP bodies), from which its schema is made; a
middleware checks every call against that structure as strictly as HTTP checks a body
(unknown arguments, wrong types and NUL characters are refused, in plain words) and
offers a token only the tools it may call. Each tool is one call into the Python API
through `Access`; a CIS error comes back as a tool error `<code>: <what to do>`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Annotated, Any, get_args, get_origin

import msgspec
from mcp.server._otel import OpenTelemetryMiddleware as Traced
from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import CallToolResult, TextContent
from pydantic import Field

from .. import __version__
from ..access.limits import Access
from ..errors import CISError, Forbidden, InvalidInput, Unauthorized
from ..model import Search
from ..node import Node
from ..shapes import convert
from . import tools
from .middleware import TOKEN_STATE
from .tools import TOOLS, ToolSpec

INSTRUCTIONS = (
    "CIS is the user's long-term memory, kept on their own machine. Before answering about "
    "the user's projects, preferences, people or past decisions, call memory_search. When "
    "you learn something worth keeping across sessions (a fact, preference, decision or "
    "result), store it with memory_add: one self-contained statement per memory, with a key "
    "when it is a setting that later replaces itself. Scopes: global, project/<name>, "
    "agent/<name>, session/<id>."
)

Caller = Callable[[Any], Access]  # the transport's request (None on stdio) -> its Access
_CALL: ContextVar[Any] = ContextVar("cis_mcp_request", default=None)  # set by Strict


def result(value: Any, wrap: str | None = None) -> CallToolResult:
    """A tool result: compact JSON text for the model, the same data structured, scores
    to 3 decimals (the SDK's own conversion indents its JSON: context the model pays)."""
    data = tools.rounded(msgspec.to_builtins(value))
    if wrap is not None:
        data = {wrap: data}
    text = msgspec.json.encode(data).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def failed(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


@contextmanager
def resource_errors() -> Iterator[None]:
    try:
        yield
    except CISError as exc:
        raise ResourceError(f"{exc.code}: {exc.told('mcp')}") from exc


def stdio_caller(node: Node) -> Caller:
    """A local process the user started: no token, no limits."""
    access = node.access()
    return lambda request: access


def http_caller(node: Node) -> Caller:
    """The caller of an HTTP request, as the token gate verified it (fails closed)."""

    def caller(request: Any) -> Access:
        token = getattr(getattr(request, "state", None), TOKEN_STATE, None)
        if token is None:
            raise Unauthorized("this MCP endpoint needs a bearer token")
        return node.access(token)

    return caller


def _request(ctx: Context) -> Any:
    return ctx.request_context.request


def build(node: Node, caller: Caller) -> MCPServer:
    server: MCPServer = MCPServer(
        "cis",
        title="CIS memory",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
        middleware=[Strict(caller)],
    )
    # the SDK's span of every message would carry what calls and errors say into any
    # OpenTelemetry exporter set up in the process; its docs: drop it to opt out
    server.middleware[:] = [m for m in server.middleware if not isinstance(m, Traced)]
    for spec in TOOLS.values():
        _register(server, caller, spec)
    _resources(server, caller)
    _prompts(server, caller)
    return server


# ---- tools ---------------------------------------------------------------------------


def _pydantic(annotation: Any) -> Any:
    """A field type as pydantic reads it: msgspec's description as a pydantic Field."""
    if get_origin(annotation) is not Annotated:
        return annotation
    base, *extras = get_args(annotation)
    meta = next((e for e in extras if isinstance(e, msgspec.Meta)), None)
    if meta is None:
        return base
    return Annotated[
        base, Field(description=meta.description, json_schema_extra=meta.extra_json_schema)
    ]


def _register(server: MCPServer, caller: Caller, spec: ToolSpec) -> None:
    """A tool whose parameters are the fields of its structure (but those left out)."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context)]
    for field in spec.fields:
        default: Any = inspect.Parameter.empty
        if field.default is not msgspec.NODEFAULT:
            default = field.default
        elif field.default_factory is not msgspec.NODEFAULT:
            default = field.default_factory()
        params.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=_pydantic(field.type),
            )
        )

    def handler(ctx: Context, **arguments: Any) -> CallToolResult:
        try:
            asked = convert(arguments, spec.args, "this tool")
            return result(spec.run(caller(_request(ctx)), asked), spec.wrap)
        except CISError as exc:
            return failed(f"{exc.code}: {exc.told('mcp')}")

    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        params, return_annotation=CallToolResult
    )
    handler.__name__ = spec.name
    server.add_tool(
        handler, name=spec.name, description=spec.description, annotations=spec.annotations
    )


class Strict:
    """MCP middleware: a token is offered only the tools it may call, and every call is
    checked against its tool's structure before the SDK sees it."""

    def __init__(self, caller: Caller):
        self.caller = caller

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        _CALL.set(ctx.request)
        if ctx.method == "tools/list":
            listed = await call_next(ctx)
            access = self._access(ctx)
            if access is not None and isinstance(listed, dict):
                listed["tools"] = [
                    t for t in listed.get("tools", ()) if self._offered(t.get("name"), access)
                ]
            return listed
        if ctx.method == "tools/call":
            params = ctx.params or {}
            spec = TOOLS.get(str(params.get("name")))
            if spec is not None:
                refused = self._refused(ctx, spec, params.get("arguments") or {})
                if refused is not None:
                    return failed(refused)
        return await call_next(ctx)

    @staticmethod
    def _offered(name: Any, access: Access) -> bool:
        spec = TOOLS.get(str(name))
        return spec is None or spec.allowed(access)

    def _access(self, ctx: Any) -> Access | None:
        try:
            return self.caller(ctx.request)
        except CISError:
            return None  # the tool itself answers why

    def _refused(self, ctx: Any, spec: ToolSpec, arguments: Any) -> str | None:
        """Why a call may not run (or None): a tool the token may not use, an argument
        the tool does not take, a value of the wrong type."""
        access = self._access(ctx)
        if access is not None and not spec.allowed(access):
            denied = Forbidden(f"{access.who} may not use {spec.name}")
            return f"{denied.code}: {denied}"
        if not isinstance(arguments, dict):
            return "invalid_input: the arguments must be an object"
        takes = spec.takes
        unknown = sorted(set(arguments) - set(takes))
        if unknown:
            return (
                f"invalid_input: {spec.name} takes no argument {', '.join(unknown)}; "
                f"it takes: {', '.join(takes)}"
            )
        try:
            convert(_parsed(arguments), spec.args, spec.name)
        except InvalidInput as exc:
            return f"{exc.code}: {exc.told('mcp')}"
        return None


def _parsed(arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments with lists and objects sent as JSON text read as such (some clients
    send them so, and the SDK reads them so too)."""
    out = dict(arguments)
    for name, value in arguments.items():
        if isinstance(value, str) and value[:1] in "[{":
            with suppress(ValueError):
                out[name] = json.loads(value)
    return out


# ---- resources and the prompt ----------------------------------------------------------


def _resources(server: MCPServer, caller: Caller) -> None:
    @server.resource("cis://status", mime_type="application/json")
    def status() -> str:
        """The node's status as JSON (a scoped token sees its scope's counts alone)."""
        with resource_errors():  # a static resource gets no Context: the middleware's note
            return msgspec.json.encode(caller(_CALL.get()).status()).decode()

    @server.resource("cis://memory/{id}", mime_type="application/json")
    def memory(id: str, ctx: Context) -> str:
        """One memory as JSON, by id."""
        with resource_errors():
            return msgspec.json.encode(caller(_request(ctx)).get(id)).decode()


def _prompts(server: MCPServer, caller: Caller) -> None:
    @server.prompt()
    def recall(
        ctx: Context,
        task: Annotated[str, Field(description="the task you are about to work on")],
        limit: Annotated[int, Field(ge=1, le=50)] = 8,
        scope: Annotated[str | None, Field(description="the scope to recall from")] = None,
    ) -> list[UserMessage]:
        """Load the memories relevant to a task into the conversation."""
        try:
            asked = convert({"query": task, "limit": limit, "scope": scope}, Search, "recall")
            hits = caller(_request(ctx)).search(asked)
        except CISError as exc:
            raise ResourceError(f"{exc.code}: {exc.told('mcp')}") from exc
        if not hits:
            body = "Nothing in memory relates to this task yet."
        else:
            lines = [f"- [{h.memory.scope}, {h.memory.category}] {h.memory.text}" for h in hits]
            body = "What I remember that may bear on this task:\n" + "\n".join(lines)
        return [UserMessage(f"{body}\n\nThe task: {task}")]
