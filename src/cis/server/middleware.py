"""ASGI layers in front of every route: request metrics, bearer tokens, body size limits."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from ..access.tokens import TokenService
from ..errors import CISError, TooLarge, Unauthorized
from ..metrics import Counter, Histogram
from .wire import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_STATE = "cis_token"  # where the verified Token sits in the request's state
# answered without a token (with a 404): an MCP client that meets a 401 looks here for
# OAuth, and must learn at once that there is none, not that its token is wrong
OPEN_PREFIXES = ("/.well-known/",)


async def send_error(
    send: Send, exc: CISError, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = error_body(exc.code, str(exc))
    await send(
        {
            "type": "http.response.start",
            "status": exc.http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Meter:
    """Counts requests and times them, labelled by route template (never raw paths)."""

    def __init__(self, app: ASGIApp, mounted: frozenset[str] = frozenset()):
        self.app = app
        self.mounted = mounted  # paths served by plain routes, which leave no template
        self.requests = Counter("cis_http_requests_total", "HTTP requests, by route and status.")
        self.seconds = Histogram("cis_http_request_seconds", "HTTP request latency, by route.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is None:
                template = scope["path"] if scope["path"] in self.mounted else "unmatched"
            method = scope.get("method", "")
            labels = (("method", method), ("route", template))
            self.seconds.observe(time.perf_counter() - started, labels)
            self.requests.inc((*labels, ("status", str(status[0]))))


class Gate:
    """Lets a request through only with a valid bearer token (but for `open_paths`),
    and with a body within its size limit."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: TokenService,
        *,
        open_paths: frozenset[str],
        max_body: int,
        large_bodies: dict[str, int],
    ):
        self.app = app
        self.tokens = tokens
        self.open_paths = open_paths
        self.max_body = max_body
        self.large_bodies = large_bodies
        # token checks take turns on one worker thread: each is a short read, and
        # several at once beside a search only fight it for the interpreter
        self._checks = anyio.CapacityLimiter(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path not in self.open_paths and not path.startswith(OPEN_PREFIXES):
            try:
                token = await self._token(scope)
            except Unauthorized as exc:
                await send_error(send, exc, ((b"www-authenticate", b'Bearer realm="cis"'),))
                return
            scope.setdefault("state", {})[TOKEN_STATE] = token
        limit = self.large_bodies.get(path, self.max_body)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, _too_large(limit))
            return
        started = [False]
        received = [0]

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > limit:
                    raise _too_large(limit)
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        except TooLarge as exc:
            if started[0]:
                raise
            await send_error(send, exc)
        except Exception:
            # the app's handler has logged it and answered a JSON 500; Starlette re-raises
            # only so that servers may log it, which would log it twice
            if not started[0]:
                raise

    async def _token(self, scope: Scope) -> Any:
        header = _header(scope, b"authorization")
        if header is None:
            raise Unauthorized("this API needs a token: send 'Authorization: Bearer <token>'")
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise Unauthorized("send the token as 'Authorization: Bearer <token>'")
        token = await anyio.to_thread.run_sync(
            self.tokens.verify, secret.strip(), limiter=self._checks
        )
        if token is None:
            raise Unauthorized(
                "the token is not valid (mistyped or revoked); create one with `cis token create`"
            )
        return token


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"request body is over {limit} bytes; send less"
        " (limits: CIS_HTTP_MAX_BODY_BYTES, CIS_HTTP_MAX_IMPORT_BYTES)"
    )
