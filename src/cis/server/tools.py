"""The MCP tools: for each, the structure its arguments are, who may call it, and the one
call into the Python API it makes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from mcp_types import ToolAnnotations

from ..access.limits import Access
from ..model import Doc, Listing, ScopeArg, Search
from .wire import AddBody, Body, DagBody, UpdateBody

READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
ADD = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
CHANGE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
RUN = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
SCORES = frozenset({"score", "text_score", "vector_score", "context_score", "time_score"})

IdOrKey = Annotated[str, Doc(description="the memory's id, or its key (looked up in scope)")]


class Target(Body):
    id_or_key: IdOrKey
    scope: ScopeArg = None


class Change(UpdateBody, kw_only=True):
    id_or_key: IdOrKey
    scope: ScopeArg = None


class NoArgs(Body):
    pass


class DagArgs(DagBody):
    workflow: Annotated[
        str | dict[str, Any] | None,
        Doc(description="or the workflow itself: TOML, YAML or JSON text, or an object"),
    ] = None  # type: ignore[assignment]


class RunRef(Body):
    run_id: Annotated[str | None, Doc(description="a run id; omit for the latest")] = None


class RunToCancel(Body):
    run_id: Annotated[str, Doc(description="the run to stop")]


class RunListing(Body):
    limit: Annotated[
        int, Doc(description="how many runs", extra_json_schema={"minimum": 1, "maximum": 200})
    ] = 20


Kind = str  # "read", "write" or "run": what a caller must be allowed


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    args: type[Body] | type[msgspec.Struct]
    needs: Kind
    annotations: ToolAnnotations
    run: Callable[[Access, Any], Any]
    wrap: str | None = None
    leave_out: frozenset[str] = frozenset()

    @property
    def fields(self) -> list[msgspec.structs.FieldInfo]:
        """The arguments, those it needs first."""
        given = [f for f in msgspec.structs.fields(self.args) if f.name not in self.leave_out]
        return sorted(given, key=lambda f: not f.required)

    @property
    def takes(self) -> list[str]:
        return [f.name for f in self.fields]

    def allowed(self, access: Access) -> bool:
        if self.needs == "run":
            return access.trusted
        return self.needs == "read" or access.may_write


def rounded(data: Any) -> Any:
    """Scores in plain data rounded to 3 decimals (more digits mean nothing to a model)."""
    if isinstance(data, dict):
        return {
            k: round(v, 3) if k in SCORES and isinstance(v, float) else rounded(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [rounded(v) for v in data]
    return data


def _add(access: Access, asked: AddBody) -> Any:
    fields = msgspec.structs.asdict(asked)
    return access.add(fields.pop("text"), **fields)


def _update(access: Access, asked: Change) -> Any:
    return access.update(
        asked.id_or_key, asked.text, tags=asked.tags, metadata=asked.metadata, scope=asked.scope
    )


def _dag_run(access: Access, asked: DagArgs) -> Any:
    fields = msgspec.structs.asdict(asked)
    if isinstance(asked.workflow, dict):
        fields["workflow"], fields["format"] = json.dumps(asked.workflow), "json"
    return access.dags.submit(**fields)


def _runs(access: Access, asked: RunListing) -> Any:
    runs = access.dags.list(asked.limit)
    for run in runs:
        run.tasks = []
    return runs


_SPECS = [
    ToolSpec(
        name="memory_add",
        description="Store a memory for later sessions; returns it with its id. A key already"
        " used in the scope is a conflict: change that memory with memory_update instead.",
        args=AddBody,
        needs="write",
        annotations=ADD,
        run=_add,
        leave_out=frozenset({"embedding"}),
    ),
    ToolSpec(
        name="memory_search",
        description="Find memories by meaning and by words, best first. Each hit has a score"
        " in [0, 1] and why it matched: text_score (its words), context_score (its words"
        " with those of its thread: the memories around it in its scope), vector_score"
        " (its meaning), time_score (1 if its time is in a month or year the query names).",
        args=Search,
        needs="read",
        annotations=READ,
        run=lambda access, asked: access.search(asked),
        wrap="hits",
        leave_out=frozenset({"embedding"}),
    ),
    ToolSpec(
        name="memory_get",
        description="One memory by id, or by key (keys are looked up in scope, default global).",
        args=Target,
        needs="read",
        annotations=READ,
        run=lambda access, asked: access.get(asked.id_or_key, scope=asked.scope),
    ),
    ToolSpec(
        name="memory_update",
        description="Change a memory's text, tags or metadata; the old version stays in its"
        " history.",
        args=Change,
        needs="write",
        annotations=CHANGE,
        run=_update,
    ),
    ToolSpec(
        name="memory_delete",
        description="Delete a memory; it is no longer found, but its history is kept.",
        args=Target,
        needs="write",
        annotations=CHANGE,
        run=lambda access, asked: access.delete(asked.id_or_key, scope=asked.scope),
    ),
    ToolSpec(
        name="memory_list",
        description="Memories in the order they were added, a page at a time; pass the"
        " next_cursor of a page to get the next.",
        args=Listing,
        needs="read",
        annotations=READ,
        run=lambda access, asked: access.list(asked),
    ),
    ToolSpec(
        name="memory_history",
        description="Every add, update and delete of a memory, oldest first (deleted ones too).",
        args=Target,
        needs="read",
        annotations=READ,
        run=lambda access, asked: access.history(asked.id_or_key, scope=asked.scope),
        wrap="history",
    ),
    ToolSpec(
        name="node_status",
        description="The node's counts, index state and embedding model (a token limited to"
        " a scope sees that scope's counts).",
        args=NoArgs,
        needs="read",
        annotations=READ,
        run=lambda access, asked: access.status(),
    ),
    ToolSpec(
        name="dag_run",
        description="Run a DAG workflow of shell, agent and skill tasks on the node, in the"
        " background; returns the pending run, to follow with dag_status. Its tasks run"
        " commands on the node's machine.",
        args=DagArgs,
        needs="run",
        annotations=RUN,
        run=_dag_run,
    ),
    ToolSpec(
        name="dag_status",
        description="A workflow run and each task's state, attempts, exit code, output and error.",
        args=RunRef,
        needs="run",
        annotations=READ,
        run=lambda access, asked: access.dags.status(asked.run_id),
    ),
    ToolSpec(
        name="dag_list",
        description="Recent workflow runs, newest first.",
        args=RunListing,
        needs="run",
        annotations=READ,
        run=_runs,
        wrap="runs",
    ),
    ToolSpec(
        name="dag_cancel",
        description="Stop a running workflow: its tasks' processes are killed within a second.",
        args=RunToCancel,
        needs="run",
        annotations=CHANGE,
        run=lambda access, asked: access.dags.cancel(asked.run_id),
    ),
]
TOOLS: dict[str, ToolSpec] = {spec.name: spec for spec in _SPECS}
