"""What crosses the HTTP API: request bodies, response shapes and their JSON encoding.

Bodies are msgspec Structs decoded strictly: unknown fields and wrong types are refused
with the path of the bad value. The same Structs give the OpenAPI schemas.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..dag.runs import Run
from ..errors import InvalidInput
from ..model import HistoryEntry, Hit, Memory
from ..node import NodeStatus


class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every request body."""


class AddBody(Body):
    text: str
    key: str | None = None
    scope: str | None = None
    domain: str = "private"
    category: str = "context"
    tags: list[str] = []
    metadata: dict[str, Any] | None = None
    event_at: str | int | None = None
    embedding: list[float] | None = None


class UpdateBody(Body):
    text: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


class SearchBody(Body):
    query: str
    limit: int = 10
    scope: str | None = None
    domain: str | None = None
    category: str | None = None
    tags: list[str] | None = None
    since: str | int | None = None
    until: str | int | None = None
    mode: str = "hybrid"
    embedding: list[float] | None = None


class DagBody(Body):
    file: str | None = None
    workflow: str | None = None
    format: str = "toml"
    inputs: dict[str, str] = {}
    concurrency: int | None = None


class MemoryPage(msgspec.Struct, kw_only=True):
    items: list[Memory]
    next_cursor: str | None


class SearchResult(msgspec.Struct, kw_only=True):
    hits: list[Hit]


class ImportResult(msgspec.Struct, kw_only=True):
    imported: int


class RunList(msgspec.Struct, kw_only=True):
    runs: list[Run]


class Health(msgspec.Struct, kw_only=True):
    status: str


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: str
    message: str


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail


RESPONSES: tuple[type, ...] = (
    Memory,
    MemoryPage,
    SearchResult,
    ImportResult,
    NodeStatus,
    Health,
    ErrorBody,
    HistoryEntry,
    Run,
    RunList,
)
BODIES: tuple[type, ...] = (AddBody, UpdateBody, SearchBody, DagBody)

_encoder = msgspec.json.Encoder()
encode = _encoder.encode


def decode(raw: bytes, kind: type[Body]) -> Any:
    """A request body as `kind`; InvalidInput names what is wrong and where."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"request body: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"request body is not valid UTF-8 (bad byte at {exc.start})") from exc
    except msgspec.DecodeError as exc:
        if not raw.strip():
            raise InvalidInput("request body is empty; send a JSON object") from exc
        raise InvalidInput(f"request body is not valid JSON ({exc})") from exc


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
