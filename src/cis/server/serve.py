"""`cis serve`: the HTTP API and MCP over streamable HTTP, in one uvicorn process."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
import uvloop

from ..errors import NetworkError
from ..node import Node
from . import mcp
from .http import create_app
from .stdio import plain_logging

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def http_app(node: Node, host: str) -> Any:
    """The HTTP API with the MCP streamable-HTTP endpoint at /mcp, behind one token gate."""
    server = mcp.build(node, mcp.http_caller(node))
    # bound to loopback, /mcp checks Host and Origin (DNS-rebinding protection)
    mcp_app = server.streamable_http_app(streamable_http_path="/mcp", host=host)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return create_app(node, mcp_routes=list(mcp_app.routes), lifespan=lifespan)


def bind(host: str, port: int, flag: str = "--port") -> socket.socket:
    """A listening TCP socket on host:port; NetworkError says why it cannot be had."""
    shown = f"[{host}]" if ":" in host else host
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise NetworkError(f"cannot resolve {host!r} ({exc.strerror}); use --host") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = {
            errno.EADDRINUSE: f"{shown}:{port} is in use (another cis serve?); use {flag}",
            errno.EADDRNOTAVAIL: f"{host} is not an address of this machine; use {flag}",
            errno.EACCES: f"port {port} needs privileges here; use {flag} with a port over 1023",
        }.get(exc.errno or 0, f"cannot listen on {shown}:{port}: {exc.strerror}")
        raise NetworkError(reason) from exc
    return sock


def serve_http(node: Node, host: str, port: int, sync: socket.socket | None = None) -> None:
    """Serve until SIGINT or SIGTERM; prints one line with the address once listening.
    With `sync`, peers sync on that socket (see net/service.py)."""
    listener = bind(host, port)
    plain_logging()
    syncing = node.sync  # made here, before any request may ask for it
    if node.config.sync:
        where = None if sync is None else sync.getsockname()[:2]
        syncing.start(sync, node.config.discovery)  # the listener takes the socket over
        if where is not None:
            print(f"CIS sync on wss://{where[0]}:{where[1]} as {node.identity.did}", flush=True)
    node.memory.embedder_warm()
    config = uvicorn.Config(
        http_app(node, host),
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again for the handler it
    # found; a quiet one lets the node close and the process exit 0 instead of dying
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # uvicorn's `loop` setting applies only to its own run(); serve() runs on the loop
        # it is given, so uvloop is made here (the event loop's CPU a search at 100k:
        # 1.16 ms against 1.49-2.0 on asyncio's own loop)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(server, listener, host))
    finally:
        syncing.close()
        listener.close()
        for sig, handler in quiet.items():
            signal.signal(sig, handler)


async def _serve(server: uvicorn.Server, listener: socket.socket, host: str) -> None:
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        port = listener.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"CIS listening on http://{shown}:{port} (HTTP API /v1, MCP /mcp)", flush=True)
        if host not in LOOPBACK:
            print(
                "warning: reachable from other machines; tokens travel in clear text over"
                " plain HTTP, so put TLS in front of it",
                file=sys.stderr,
                flush=True,
            )
    await task
