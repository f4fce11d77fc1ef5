"""`cis serve` (HTTP API + MCP over HTTP) and `cis mcp` (MCP over stdio)."""

from __future__ import annotations

from typing import Annotated

import typer

from .state import State


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind [127.0.0.1, CIS_HTTP_HOST].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port [7676, CIS_HTTP_PORT]; 0 picks a free one."),
    ] = None,
    sync_host: Annotated[
        str | None,
        typer.Option("--sync-host", help="Address peers reach [0.0.0.0, CIS_SYNC_HOST]."),
    ] = None,
    sync_port: Annotated[
        int | None,
        typer.Option("--sync-port", help="Sync port [7677, CIS_SYNC_PORT]; 0 picks a free one."),
    ] = None,
) -> None:
    """Serve the HTTP API and MCP (streamable HTTP at /mcp) until Ctrl-C, and sync public
    memory with this node's peers (CIS_SYNC=false: no sync)."""
    state: State = ctx.obj
    with state.open(background=True) as node:
        from ..server.serve import bind, serve_http  # the HTTP stack loads only when used

        if not node.tokens.list():
            print("no API tokens yet: create one with `cis token create NAME`", flush=True)
        config = node.config
        listener = None
        if config.sync:
            listener = bind(
                sync_host if sync_host is not None else config.sync_host,
                sync_port if sync_port is not None else config.sync_port,
                "--sync-port",
            )
        try:
            serve_http(
                node,
                host if host is not None else config.http_host,
                port if port is not None else config.http_port,
                listener,
            )
        finally:
            if listener is not None:
                listener.close()  # (already closed by the sync listener when it ran)


def mcp(ctx: typer.Context) -> None:
    """Serve MCP over stdio, for an agent to spawn: `claude mcp add cis -- cis mcp`."""
    state: State = ctx.obj
    with state.open(create=True, background=True) as node:
        from ..server.stdio import serve_stdio

        serve_stdio(node)
