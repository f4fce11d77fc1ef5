"""A caller's view of the memory API: a token's scope and read-only limits applied.

Every shell that serves callers it does not trust (HTTP, MCP over HTTP) goes through
`Access`; a caller with no token limits (the CLI, stdio MCP, a token of all scopes)
gets the same methods with nothing withheld.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from ..errors import Forbidden, NotFound
from ..memory import validate as check
from ..memory.service import MemoryService
from ..memory.transfer import parse_records
from ..model import (
    Filter,
    HistoryEntry,
    Hit,
    Imported,
    Listing,
    Memory,
    Page,
    ScopeStatus,
    Search,
    Token,
)

if TYPE_CHECKING:
    from ..dag.service import DagService
    from ..node import NodeStatus
    from ..skills.registry import SkillRegistry

F = TypeVar("F", bound=Filter)


class Access:
    """The memory API as one caller may use it.

    With a scoped token, a call that names no scope uses the token's scope, a call that
    names another scope is Forbidden, and a memory of another scope looks absent
    (NotFound), so a token never learns what lies outside its scope. A read-only token
    gets Forbidden on every write.
    """

    def __init__(
        self,
        memory: MemoryService,
        token: Token | None = None,
        dags: Callable[[], DagService] | None = None,
        skills: SkillRegistry | None = None,
        status: Callable[[], NodeStatus] | None = None,
    ):
        self.memory = memory
        self.token = token
        self._dags = dags
        self._skills = skills
        self._status = status

    @property
    def scope(self) -> str | None:
        return None if self.token is None else self.token.scope

    @property
    def who(self) -> str:
        """The caller, as messages name it."""
        return f"token {self.token.name!r}" if self.token else "this caller"

    @property
    def may_write(self) -> bool:
        return self.token is None or not self.token.read_only

    @property
    def trusted(self) -> bool:
        """Whether the caller may run code on this machine (workflows, skills): no token
        (a local caller), or a token of all scopes that is not read-only."""
        return self.token is None or (not self.token.read_only and self.token.scope is None)

    def _writable(self) -> None:
        if not self.may_write:
            raise Forbidden(f"{self.who} is read-only")

    def runs_the_node(self, what: str) -> None:
        """Forbidden unless the caller is trusted (see `trusted`): choosing peers and
        syncing with them is running the node."""
        if not self.trusted:
            raise Forbidden(f"{self.who} may not {what}: it takes a read-write token of all scopes")

    def whole_node(self, what: str) -> None:
        """Forbidden unless the caller sees every scope (node-wide figures tell of all)."""
        if self.scope is not None:
            raise Forbidden(f"{self.who} is limited to scope {self.scope}; it may not {what}")

    def status(self) -> NodeStatus | ScopeStatus:
        """The node's status; for a scoped caller, its scope's counts alone."""
        if self.scope is not None:
            memories, pending, vectors = self.memory.scope_counts(self.scope)
            return ScopeStatus(
                scope=self.scope,
                model=self.memory.embedder.model_id,
                memories=memories,
                pending_embeddings=pending,
                vectors=vectors,
            )
        if self._status is None:
            raise Forbidden("the node's status is not available to this caller")
        return self._status()

    def _scope(self, asked: str | None) -> str | None:
        """The scope a call works in: the asked one if allowed, else the caller's own
        (None: any scope)."""
        limit = self.scope
        if asked is None:
            return limit
        asked = check.scope(asked)
        if limit is not None and asked != limit:
            raise Forbidden(f"{self.who} is limited to scope {limit}, not {asked}")
        return asked

    def _home(self, asked: str | None) -> str:
        """The scope a write, or a lookup by key, works in: global unless limited."""
        return self._scope(asked) or "global"

    def _visible(self, memory: Memory | None, id_or_key: str, scope: str) -> Memory:
        if memory is None or (self.scope is not None and memory.scope != self.scope):
            raise NotFound(f"no memory {id_or_key!r}: no such id, nor key in scope {scope}")
        return memory

    # ---- writes ----------------------------------------------------------------

    def add(self, text: str, *, scope: str | None = None, **fields: Any) -> Memory:
        self._writable()
        return self.memory.add(text, scope=self._home(scope), **fields)

    def set(self, key: str, text: str, *, scope: str | None = None, **fields: Any) -> Memory:
        self._writable()
        return self.memory.set(key, text, scope=self._home(scope), **fields)

    def update(
        self,
        id_or_key: str,
        text: str | None = None,
        *,
        tags: Iterable[str] | None = None,
        metadata: dict[str, Any] | None = None,
        scope: str | None = None,
    ) -> Memory:
        self._writable()
        found = self.get(id_or_key, scope=scope)
        return self.memory.update(found.id, text, tags=tags, metadata=metadata)

    def delete(self, id_or_key: str, *, scope: str | None = None) -> Memory:
        self._writable()
        found = self.get(id_or_key, scope=scope)
        return self.memory.delete(found.id)

    def import_data(
        self, data: bytes, *, name: str, json_list: bool = False, skip_existing: bool = False
    ) -> Imported:
        """Import JSON Lines (or a JSON list): every record or none. A scoped caller may
        import only into its scope (records that name no scope land in it), and may not
        choose ids: an id in use elsewhere would tell it what other scopes hold."""
        self._writable()
        found = parse_records(data, name, json_list=json_list)
        if self.scope is not None:
            for number, record in found.records:
                asked = record.get("scope")
                if asked is not None and asked != self.scope:
                    raise Forbidden(
                        f"{name}: line {number}: {self.who} is limited to scope "
                        f"{self.scope}, not {asked}; nothing imported"
                    )
                if "id" in record:
                    raise Forbidden(
                        f"{name}: line {number}: {self.who} may not set memory ids; "
                        "remove the `id` fields (new ones are given); nothing imported"
                    )
                record["scope"] = self.scope
        return self.memory.import_records(found, skip_existing=skip_existing)

    # ---- workflows -------------------------------------------------------------

    def _trusted(self, what: str) -> None:
        if not self.trusted:
            raise Forbidden(
                f"{self.who} may not {what}: that takes a token of all scopes that is not read-only"
            )

    @property
    def dags(self) -> DagService:
        self._trusted("run or manage workflows")
        if self._dags is None:
            raise Forbidden("workflows are not available to this caller")
        return self._dags()

    @property
    def skills(self) -> SkillRegistry:
        self._trusted("run skills")
        if self._skills is None:
            raise Forbidden("skills are not available to this caller")
        return self._skills

    # ---- reads -----------------------------------------------------------------

    def get(self, id_or_key: str, *, scope: str | None = None) -> Memory:
        """The memory with this id (or key in `scope`); NotFound if missing or not visible."""
        where = self._home(scope)
        return self._visible(self.memory.get(id_or_key, where), id_or_key, where)

    def history(self, id_or_key: str, *, scope: str | None = None) -> list[HistoryEntry]:
        where = self._home(scope)
        entries = self.memory.history(id_or_key, scope=where)
        if self.scope is not None:
            owner = self.memory.scope_of(entries[0].memory_id)
            if owner != self.scope:
                raise NotFound(f"no memory {id_or_key!r} in scope {self.scope}")
        return entries

    def search(self, asked: Search) -> list[Hit]:
        return self.memory.find(self._within(asked))

    def expect(self, asked: Search) -> None:
        """Begin embedding the query of a search to come (the scope plays no part)."""
        self.memory.expect(asked)

    def list(self, asked: Listing) -> Page:
        return self.memory.page(self._within(asked))

    def export(self, asked: Filter) -> Iterator[bytes]:
        """The export as JSON Lines, one memory a line, read lazily."""
        return self.memory.export_lines(self._within(asked))

    def _within(self, asked: F) -> F:
        """The filter with the caller's scope applied (Forbidden for another scope)."""
        scope = self._scope(asked.scope)
        return asked if scope == asked.scope else msgspec.structs.replace(asked, scope=scope)
