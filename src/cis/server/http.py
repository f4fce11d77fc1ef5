"""The HTTP API (FastAPI): each route is one call into the Python API plus JSON.

Every route but /healthz needs a bearer token (`cis token create`); a token's scope and
read-only limits apply through `Access`. Errors are `{"error": {"code", "message"}}`
with the status of the CIS error class; nothing a caller sends yields a 500.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import msgspec
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response, StreamingResponse
from fastapi.telemetry import TelemetryConfig
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .. import __version__
from ..access.limits import Access
from ..dag.runs import Run
from ..errors import CISError, InvalidInput
from ..memory import validate as check
from ..metrics import render, sample
from ..model import Filter, HistoryEntry, Listing, Memory, NodeInfo, Page, Search
from ..net.network import AclEntry, Approval, Trust, chosen
from ..net.peers import Peer
from ..node import Node, NodeStatus
from ..shapes import convert
from . import wire
from .middleware import TOKEN_STATE, Gate, Meter
from .wire import AddBody, DagBody, UpdateBody

log = logging.getLogger("cis.http")
EXPORT_CHUNK = 64 * 1024
JSON_TYPES = ("application/json",)
SEARCHES_AT_ONCE = 1
NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return wire.encode(content)


def ok(value: Any, status: int = 200) -> JSON:
    return JSON(value, status_code=status)


def body(kind: type[msgspec.Struct]) -> Any:
    """A dependency that decodes the request body strictly as `kind`."""

    async def decode(request: Request) -> Any:
        return wire.decode(await request.body(), kind)

    return Depends(decode)


def documented(kind: type, status: int = 200, *, many: bool = False) -> dict[Any, Any]:
    """OpenAPI `responses` for a route that answers `kind` (and the error shape)."""
    error = {"content": {"application/json": {"schema": wire.ref(wire.ErrorBody)}}}
    return {
        status: {"content": {"application/json": {"schema": wire.ref(kind, many=many)}}},
        "4XX": {"description": "error", **error},
    }


def request_body(kind: type, media: str = "application/json") -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {media: {"schema": wire.ref(kind)}}}}


def create_app(node: Node, *, mcp_routes: list[Any] | None = None, lifespan: Any = None) -> Any:
    """The ASGI app: routes, error handlers, token gate, body limits and metrics."""
    app = FastAPI(
        title="CIS",
        version=__version__,
        summary="Local-first, encrypted memory for LLM agents.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(_known_query)],
        # FastAPI traces requests into any OpenTelemetry provider set up in the process
        # (or by FASTAPI_OTEL_AUTO_CONFIGURE): paths and errors that hold memory text
        # would leave the node with them, so none of it runs
        telemetry=NO_TELEMETRY,
    )
    _routes(app, node)
    _errors(app)
    if mcp_routes:
        app.router.routes.extend(mcp_routes)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    cfg = node.config
    gate = Gate(
        app,
        node.tokens,
        open_paths=frozenset({"/healthz"}),
        max_body=cfg.http_max_body_bytes,
        large_bodies={"/v1/import": cfg.http_max_import_bytes},
    )
    meter = Meter(gate, frozenset(getattr(r, "path", "") for r in mcp_routes or ()))
    app.state.meter = meter
    app.state.node = node
    return meter


_QUERY_NAMES: dict[int, frozenset[str]] = {}  # by id() of a route (routes are not hashable)


def _query_names(route: Any) -> frozenset[str]:
    known = _QUERY_NAMES.get(id(route))
    if known is not None:
        return known
    names: set[str] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        names.update(field.alias for field in dependant.query_params)
        stack.extend(dependant.dependencies)
    known = _QUERY_NAMES[id(route)] = frozenset(names)
    return known


async def _known_query(request: Request) -> None:
    """Refuses query parameters the route does not take (a typo would widen a filter),
    and any parameter that holds a NUL character."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if "\x00" in str(value):
                raise InvalidInput(f"{where} parameter {name} holds a NUL character; remove it")
    route = request.scope.get("route")
    if getattr(route, "dependant", None) is None:
        return
    known = _query_names(route)
    unknown = set(request.query_params) - known
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise InvalidInput(
            f"unknown query parameter(s): {', '.join(sorted(unknown))}; this route takes: {takes}"
        )


async def _caller(request: Request) -> Access:  # async: no thread hop for this
    node: Node = request.app.state.node
    return node.access(getattr(request.state, TOKEN_STATE))


Caller = Annotated[Access, Depends(_caller)]
Scope = Annotated[str | None, Query(description="global, project/N, agent/N, session/N")]
Domain = Annotated[str | None, Query(description="private or public")]
Category = Annotated[str | None, Query()]
Tags = Annotated[list[str] | None, Query(alias="tag", description="repeatable")]
When = Annotated[str | None, Query(description="ISO-8601 time or epoch ms")]
Limit = Annotated[int, Query(ge=1, le=1000)]


@dataclass
class Filtering:
    """The fields of Filter as query parameters (listing, search and export)."""

    scope: Scope = None
    domain: Domain = None
    category: Category = None
    tags: Tags = None
    since: When = None
    until: When = None

    def build(self, kind: type[S], **more: Any) -> S:
        """The Filter (Search, Listing) of these parameters and `more`."""
        fields = {k: v for k, v in vars(self).items() if v is not None}
        return convert({**fields, **more}, kind)


async def _filtering(**fields: Any) -> Filtering:
    return Filtering(**fields)


# the same query parameters, read on the event loop (a class as a dependency would cost a
# hop to a worker thread and back on every request)
_filtering.__signature__ = inspect.signature(Filtering)  # type: ignore[attr-defined]
Filters = Annotated[Filtering, Depends(_filtering)]
S = TypeVar("S", bound=Filter)


def _routes(app: FastAPI, node: Node) -> None:
    @app.get("/healthz", responses=documented(wire.Health), tags=["node"])
    def healthz() -> JSON:
        """Liveness: answers without a token."""
        return ok(wire.Health(status="ok"))

    @app.get("/v1/status", responses=documented(NodeStatus), tags=["node"])
    def status(access: Caller) -> JSON:
        """Counts, index state, model, database size and cache statistics; for a token
        limited to a scope, that scope's counts alone."""
        return ok(access.status())

    @app.get("/v1/node", responses=documented(NodeInfo), tags=["node"])
    def node_info(access: Caller) -> JSON:
        """This node's DID (did:key), as its peers know it."""
        return ok(node.info())

    @app.get("/v1/peers", responses=documented(wire.PeerList), tags=["cluster"])
    def peers(access: Caller) -> JSON:
        """The peers this node syncs with (a token of all scopes)."""
        access.whole_node("see this node's peers")
        return ok(wire.PeerList(peers=node.peers.list()))

    @app.get("/v1/peers/nearby", responses=documented(wire.NearbyList), tags=["cluster"])
    def nearby(access: Caller) -> JSON:
        """Nodes heard on the local network (hints; a token of all scopes)."""
        access.whole_node("see the nodes nearby")
        return ok(wire.NearbyList(nearby=node.peers.nearby()))

    @app.post(
        "/v1/peers",
        status_code=201,
        responses=documented(Peer, 201),
        openapi_extra=request_body(wire.PeerBody),
        tags=["cluster"],
    )
    def add_peer(access: Caller, new: Annotated[wire.PeerBody, body(wire.PeerBody)]) -> JSON:
        """Allow a node and sync with it."""
        access.runs_the_node("add a peer")
        return ok(node.peers.add(new.did, new.address), 201)

    @app.delete("/v1/peers/{did}", responses=documented(Peer), tags=["cluster"])
    def remove_peer(access: Caller, did: str) -> JSON:
        """Stop syncing with a node; a session with it ends at once."""
        access.runs_the_node("remove a peer")
        return ok(node.peers.remove(did))

    @app.get("/v1/network", responses=documented(Trust), tags=["cluster"])
    def trust(access: Caller) -> JSON:
        """The network mode and the trust lists (allow, deny, quarantine)."""
        access.whole_node("see who may sync with this node")
        return ok(node.network.trust())

    @app.put(
        "/v1/network/mode",
        responses=documented(wire.ModeBody),
        openapi_extra=request_body(wire.ModeBody),
        tags=["cluster"],
    )
    def set_mode(access: Caller, new: Annotated[wire.ModeBody, body(wire.ModeBody)]) -> JSON:
        """Set the network mode; a session the new mode refuses ends at once."""
        access.runs_the_node("set the network mode")
        return ok(wire.ModeBody(mode=node.network.set_mode(new.mode)))

    @app.post(
        "/v1/network/entries",
        status_code=201,
        responses=documented(AclEntry, 201),
        openapi_extra=request_body(wire.VerdictBody),
        tags=["cluster"],
    )
    def judge(access: Caller, new: Annotated[wire.VerdictBody, body(wire.VerdictBody)]) -> JSON:
        """Allow, deny or quarantine a DID, replacing its earlier entry."""
        access.runs_the_node("change the trust lists")
        until = check.ahead(new.expires, "expires")
        return ok(node.network.judge(new.did, new.verdict, new.reason, until), 201)

    @app.get("/v1/network/held", responses=documented(wire.HeldList), tags=["cluster"])
    def review(access: Caller) -> JSON:
        """What senders in quarantine sent: verified, held, not applied."""
        access.whole_node("review the quarantine")
        return ok(wire.HeldList(held=node.network.review()))

    @app.post(
        "/v1/network/approve",
        responses=documented(Approval),
        openapi_extra=request_body(wire.BatchesBody),
        tags=["cluster"],
    )
    def approve(access: Caller, asked: Annotated[wire.BatchesBody, body(wire.BatchesBody)]) -> JSON:
        """Apply held batches in the order their chains need."""
        access.runs_the_node("approve held ops")
        return ok(node.network.approve(chosen(asked.ids, asked.all)))

    @app.post(
        "/v1/network/reject",
        responses=documented(wire.Rejection),
        openapi_extra=request_body(wire.BatchesBody),
        tags=["cluster"],
    )
    def reject(access: Caller, asked: Annotated[wire.BatchesBody, body(wire.BatchesBody)]) -> JSON:
        """Drop held batches and the later ones of their origins."""
        access.runs_the_node("reject held ops")
        return ok(wire.Rejection(rejected=node.network.reject(chosen(asked.ids, asked.all))))

    @app.get("/v1/network/audit", responses=documented(wire.AuditList), tags=["cluster"])
    def audit(access: Caller, limit: Limit = 100) -> JSON:
        """What sync accepted and refused, oldest first."""
        access.whole_node("read the sync audit")
        return ok(wire.AuditList(audit=node.network.audit_log(limit)))

    @app.post("/v1/sync", responses=documented(wire.SyncResult), tags=["cluster"])
    def sync_now(access: Caller, peer: Annotated[str | None, Query()] = None) -> JSON:
        """Sync with the peers (or `peer`) now; what moved, per peer."""
        access.runs_the_node("sync")
        return ok(wire.SyncResult(reports=node.sync.now(peer)))

    @app.get("/metrics", tags=["node"])
    def metrics(request: Request, access: Caller) -> Response:
        """Prometheus text format (node-wide: for a token of all scopes)."""
        access.whole_node("read the node's metrics")
        meter: Meter = request.app.state.meter
        return Response(_metrics(node, meter), media_type="text/plain; version=0.0.4")

    @app.post(
        "/v1/memories",
        status_code=201,
        responses=documented(Memory, 201),
        openapi_extra=request_body(AddBody),
        tags=["memories"],
    )
    def add(access: Caller, new: Annotated[AddBody, body(AddBody)]) -> JSON:
        """Store a memory; findable by words at once, by meaning once embedded."""
        fields = msgspec.structs.asdict(new)
        return ok(access.add(fields.pop("text"), **fields), 201)

    @app.get("/v1/memories", responses=documented(Page), tags=["memories"])
    def list_memories(
        access: Caller,
        filters: Filters,
        prefix: Annotated[str | None, Query(description="key prefix")] = None,
        limit: Limit = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the page before")] = None,
    ) -> JSON:
        """Memories in the order they were added, a page at a time."""
        asked = filters.build(Listing, prefix=prefix, limit=limit, cursor=cursor)
        return ok(access.list(asked))

    @app.get(
        "/v1/memories/{id_or_key:path}/history",
        responses=documented(HistoryEntry, many=True),
        tags=["memories"],
    )
    def history(access: Caller, id_or_key: str, scope: Scope = None) -> JSON:
        """Every add, update and delete of a memory, oldest first."""
        return ok(access.history(id_or_key, scope=scope))

    @app.get("/v1/memories/{id_or_key:path}", responses=documented(Memory), tags=["memories"])
    def get(access: Caller, id_or_key: str, scope: Scope = None) -> JSON:
        """One memory by id, or by key (in `scope`, default global)."""
        return ok(access.get(id_or_key, scope=scope))

    @app.patch(
        "/v1/memories/{id_or_key:path}",
        responses=documented(Memory),
        openapi_extra=request_body(UpdateBody),
        tags=["memories"],
    )
    def update(
        access: Caller,
        id_or_key: str,
        change: Annotated[UpdateBody, body(UpdateBody)],
        scope: Scope = None,
    ) -> JSON:
        """Change text, tags or metadata; a new text is re-embedded."""
        return ok(
            access.update(
                id_or_key, change.text, tags=change.tags, metadata=change.metadata, scope=scope
            )
        )

    @app.delete("/v1/memories/{id_or_key:path}", responses=documented(Memory), tags=["memories"])
    def delete(access: Caller, id_or_key: str, scope: Scope = None) -> JSON:
        """Delete a memory (its history stays); answers the memory as it was."""
        return ok(access.delete(id_or_key, scope=scope))

    # searches take turns on one worker thread: a search is Python work under the
    # interpreter lock, so two at once only share one core and pay for the switching
    # (bench_http, 8 clients: 142-154 searches/s against 105-112 with a thread each)
    lane = anyio.CapacityLimiter(SEARCHES_AT_ONCE)

    async def searched(access: Access, asked: Search) -> JSON:
        access.expect(asked)  # embedded while it waits its turn
        hits = await anyio.to_thread.run_sync(access.search, asked, limiter=lane)
        return ok(wire.SearchResult(hits=hits))

    @app.get("/v1/search", responses=documented(wire.SearchResult), tags=["search"])
    async def search_get(
        access: Caller,
        q: Annotated[str, Query(description="the query")],
        filters: Filters,
        limit: Limit = 10,
        mode: Annotated[str, Query(description="hybrid, vector or text")] = "hybrid",
    ) -> JSON:
        """Memories that match the query by words and meaning, best first."""
        return await searched(access, filters.build(Search, query=q, limit=limit, mode=mode))

    @app.post(
        "/v1/search",
        responses=documented(wire.SearchResult),
        openapi_extra=request_body(Search),
        tags=["search"],
    )
    async def search_post(access: Caller, asked: Annotated[Search, body(Search)]) -> JSON:
        """Search with the options in a JSON body (also takes a query `embedding`)."""
        return await searched(access, asked)

    @app.post(
        "/v1/dags",
        status_code=202,
        responses=documented(Run, 202),
        openapi_extra=request_body(DagBody),
        tags=["workflows"],
    )
    def dag_run(access: Caller, asked: Annotated[DagBody, body(DagBody)]) -> JSON:
        """Start a workflow (a file on the node, or its text) in a process of its own."""
        run = access.dags.submit(**msgspec.structs.asdict(asked))
        return ok(run, 202)

    @app.get("/v1/dags", responses=documented(wire.RunList), tags=["workflows"])
    def dag_list(access: Caller, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> JSON:
        """Recent runs, newest first (without their tasks)."""
        runs = access.dags.list(limit)
        for run in runs:
            run.tasks = []
        return ok(wire.RunList(runs=runs))

    @app.get("/v1/dags/{run_id}", responses=documented(Run), tags=["workflows"])
    def dag_status(access: Caller, run_id: str) -> JSON:
        """A run and every task's state; `latest` for the newest run."""
        return ok(access.dags.status(None if run_id == "latest" else run_id))

    @app.post("/v1/dags/{run_id}/cancel", responses=documented(Run), tags=["workflows"])
    def dag_cancel(access: Caller, run_id: str) -> JSON:
        """Stop a running run: its tasks' process trees are killed."""
        return ok(access.dags.cancel(run_id))

    @app.get("/v1/dags/{run_id}/logs", tags=["workflows"])
    def dag_logs(
        access: Caller, run_id: str, task: Annotated[str | None, Query()] = None
    ) -> Response:
        """The run's captured output, as text (each line led by its task without `task`)."""
        text = access.dags.runs.log_text(run_id, task)
        return Response(text, media_type="text/plain; charset=utf-8")

    @app.get("/v1/skills", tags=["skills"])
    def skills(access: Caller) -> JSON:
        """Installed skills (their manifests)."""
        return ok({"skills": access.skills.installed()})

    @app.post("/v1/skills/{name}/run", tags=["skills"])
    async def run_skill(request: Request, access: Caller, name: str) -> JSON:
        """Run a skill on the JSON body; answers its output, log and time (422 if it fails)."""
        raw = await request.body()
        try:
            payload = msgspec.json.decode(raw) if raw.strip() else {}
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"request body is not valid JSON ({exc})") from exc
        return ok(await run_in_threadpool(access.skills.run, name, payload))

    @app.post(
        "/v1/import",
        responses=documented(wire.ImportResult),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "application/json": {"schema": wire.ref(AddBody, many=True)},
                },
            }
        },
        tags=["memories"],
    )
    async def import_memories(
        request: Request,
        access: Caller,
        skip_existing: Annotated[
            bool, Query(description="leave out records stored already (a re-import adds nothing)")
        ] = False,
    ) -> JSON:
        """Import JSON Lines (or a JSON list with Content-Type application/json): every
        record or none; bad lines are named."""
        data = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        done = await run_in_threadpool(
            lambda: access.import_data(
                data, name="request body", json_list=kind in JSON_TYPES, skip_existing=skip_existing
            )
        )
        return ok(wire.ImportResult(imported=len(done.added), skipped=done.skipped))

    @app.get(
        "/v1/export",
        responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
        tags=["memories"],
    )
    def export(access: Caller, filters: Filters) -> StreamingResponse:
        """Memories as JSON Lines, streamed; importing them back is exact."""
        lines = access.export(filters.build(Filter))
        return StreamingResponse(_chunks(lines), media_type="application/x-ndjson")


def _chunks(lines: Iterator[bytes]) -> Iterator[bytes]:
    """Lines joined into chunks, so a big export is not one thread hop per line."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= EXPORT_CHUNK:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(CISError)
    async def cis_error(_: Request, exc: CISError) -> Response:
        if exc.http_status >= 500:
            log.warning("%s: %s", exc.code, exc)
        return JSON(
            wire.ErrorBody(error=wire.ErrorDetail(code=exc.code, message=exc.told("http"))),
            exc.http_status,
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> Response:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return await cis_error(_, InvalidInput("; ".join(problems) or "invalid request"))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = wire.ErrorBody(error=wire.ErrorDetail(code=code, message=str(exc.detail)))
        return JSON(body, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        body = wire.ErrorBody(
            error=wire.ErrorDetail(code="internal", message="internal error; see the server log")
        )
        return JSON(body, 500)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            spec.setdefault("components", {}).setdefault("schemas", {}).update(wire.schemas())
            spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            spec["security"] = [{"bearer": []}]
            app.openapi_schema = spec
        return app.openapi_schema

    return build


def _metrics(node: Node, meter: Meter) -> str:
    memory = node.memory
    cache = memory.cache.stats()
    return render(
        [
            meter.requests.render(),
            meter.seconds.render(),
            memory.search_seconds.render(),
            sample("cis_memories", "Memories stored (not deleted).", "gauge", memory.count()),
            sample(
                "cis_index_vectors", "Vectors in the in-memory index.", "gauge", len(memory.index)
            ),
            sample(
                "cis_embed_queue_depth",
                "Memories waiting for their vector.",
                "gauge",
                memory.pending(),
            ),
            sample(
                "cis_embedded_total",
                "Texts embedded by this process.",
                "counter",
                memory.indexer.embedded,
            ),
            sample(
                "cis_query_embeddings_total",
                "Search queries embedded by this process.",
                "counter",
                memory.queries.embedded,
            ),
            sample(
                "cis_query_batches_total",
                "Embedding calls those queries took (searches waiting together share one).",
                "counter",
                memory.queries.batches,
            ),
            sample(
                "cis_embed_reused_total",
                "Vectors reused for identical text.",
                "counter",
                memory.indexer.reused,
            ),
            sample("cis_cache_hits_total", "Cache hits.", "counter", cache.hits),
            sample("cis_cache_misses_total", "Cache misses.", "counter", cache.misses),
            sample(
                "cis_cache_hit_ratio",
                "Cache hits over lookups since start.",
                "gauge",
                cache.hit_ratio,
            ),
        ]
    )
