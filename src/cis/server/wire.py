"""What crosses the HTTP API: request bodies, response shapes and their JSON encoding.

Bodies are msgspec Structs decoded strictly: unknown fields and wrong types are refused
with the path of the bad value. The same Structs give the OpenAPI schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

from ..dag.runs import Run
from ..errors import InvalidInput
from ..memory.quarantine import HeldBatch
from ..model import (
    CATEGORIES,
    WHEN,
    Doc,
    HistoryEntry,
    Hit,
    Memory,
    NodeInfo,
    Page,
    ScopeArg,
    ScopeStatus,
    Search,
    VectorArg,
)
from ..net.network import AuditEntry
from ..net.peers import Nearby, Peer
from ..net.sync import SyncReport
from ..node import NodeStatus
from ..shapes import nul_free, problem


class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every request body."""


class AddBody(Body):
    """A new memory."""

    text: Annotated[str, Doc(description="the memory: one self-contained statement")]
    key: Annotated[
        str | None, Doc(description="optional name, unique in its scope, e.g. 'editor/theme'")
    ] = None
    scope: ScopeArg = None
    domain: Annotated[str, Doc(description="private (this device) or public (synced)")] = "private"
    category: Annotated[str, Doc(description=f"one of: {', '.join(CATEGORIES)}")] = "context"
    tags: Annotated[tuple[str, ...], Doc(description="short labels")] = ()
    metadata: Annotated[dict[str, Any] | None, Doc(description="any JSON object")] = None
    event_at: Annotated[
        int | str | None, Doc(description=f"when what it tells happened: {WHEN}")
    ] = None
    thread: Annotated[
        str | None,
        Doc(
            description="the memories that explain each other share it: one conversation,"
            " one task; search reads their words together"
        ),
    ] = None
    embedding: VectorArg = None


class UpdateBody(Body):
    """A change to a memory: each field given replaces what is stored."""

    text: Annotated[str | None, Doc(description="new text (embedded again)")] = None
    tags: Annotated[tuple[str, ...] | None, Doc(description="replaces the tags")] = None
    metadata: Annotated[dict[str, Any] | None, Doc(description="replaces the metadata")] = None


class DagBody(Body):
    """A workflow to run: a file on the node, or its text."""

    file: Annotated[str | None, Doc(description="path of a workflow file on the node")] = None
    workflow: Annotated[
        str | None, Doc(description="or the workflow itself, as TOML, YAML or JSON text")
    ] = None
    format: Annotated[str, Doc(description="toml, yaml or json (of workflow)")] = "toml"
    inputs: Annotated[dict[str, str], Doc(description="values for {{ inputs.NAME }}")] = {}
    concurrency: Annotated[
        int | None, Doc(description="tasks at once", extra_json_schema={"minimum": 1})
    ] = None


class SearchResult(msgspec.Struct, kw_only=True):
    hits: list[Hit]


class ImportResult(msgspec.Struct, kw_only=True):
    imported: int
    skipped: int = 0


class RunList(msgspec.Struct, kw_only=True):
    runs: list[Run]


class PeerBody(Body):
    """A node to sync with."""

    did: Annotated[str, Doc(description="its DID (did:key:z6Mk...; `cis node id` on it)")]
    address: Annotated[str, Doc(description="HOST:PORT of its sync listener, e.g. host:7677")]


class ModeBody(Body):
    """A network mode to set."""

    mode: Annotated[str, Doc(description="whitelist, open, quarantine or solitary")]


class VerdictBody(Body):
    """An entry of the trust lists."""

    did: Annotated[str, Doc(description="the node's DID")]
    verdict: Annotated[str, Doc(description="allow, deny or quarantine")]
    reason: str = ""
    expires: Annotated[
        str | None, Doc(description="until when: a span (30d, 12h) or a time; none: for good")
    ] = None


class BatchesBody(Body):
    """Held batches to approve or reject: their ids, or all."""

    ids: list[int] | None = None
    all: bool = False


class HeldList(msgspec.Struct, kw_only=True):
    held: list[HeldBatch]


class Rejection(msgspec.Struct, kw_only=True):
    rejected: list[HeldBatch]


class PeerList(msgspec.Struct, kw_only=True):
    peers: list[Peer]


class NearbyList(msgspec.Struct, kw_only=True):
    nearby: list[Nearby]


class AuditList(msgspec.Struct, kw_only=True):
    audit: list[AuditEntry]


class SyncResult(msgspec.Struct, kw_only=True):
    reports: list[SyncReport]


class Health(msgspec.Struct, kw_only=True):
    status: str


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: str
    message: str


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail


RESPONSES: tuple[type, ...] = (
    Memory,
    Page,
    SearchResult,
    ImportResult,
    NodeStatus,
    ScopeStatus,
    Health,
    ErrorBody,
    HistoryEntry,
    Run,
    RunList,
    NodeInfo,
    Peer,
    PeerList,
    AuditList,
    SyncResult,
)
BODIES: tuple[type, ...] = (AddBody, UpdateBody, Search, DagBody, PeerBody)

_encoder = msgspec.json.Encoder()
encode = _encoder.encode


T = TypeVar("T")


def decode(raw: bytes, kind: type[T]) -> T:
    """A request body as `kind`; InvalidInput names what is wrong and where."""
    try:
        value = msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"request body: {problem(exc, 'the body', kind)}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"request body is not valid UTF-8 (bad byte at {exc.start})") from exc
    except RecursionError as exc:
        raise InvalidInput("request body is nested too deeply") from exc
    except msgspec.DecodeError as exc:
        if not raw.strip():
            raise InvalidInput("request body is empty; send a JSON object") from exc
        raise InvalidInput(f"request body is not valid JSON ({exc})") from exc
    nul_free(value, "")
    return value


def error_body(code: str, message: str) -> bytes:
    return encode(ErrorBody(error=ErrorDetail(code=code, message=message)))


def schemas() -> dict[str, Any]:
    """OpenAPI component schemas of every body and response type."""
    _, components = msgspec.json.schema_components(
        (*RESPONSES, *BODIES), ref_template="#/components/schemas/{name}"
    )
    return components


def ref(kind: type, *, many: bool = False) -> dict[str, Any]:
    one = {"$ref": f"#/components/schemas/{kind.__name__}"}
    return {"type": "array", "items": one} if many else one
