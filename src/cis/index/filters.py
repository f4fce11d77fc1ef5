"""Search and list filters, compiled to one SQL condition over the memories table."""

from __future__ import annotations

import msgspec


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """Each set field narrows the result; `tags` requires every tag; times are epoch ms."""

    scope: str | None = None
    domain: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    key_prefix: str | None = None

    @property
    def empty(self) -> bool:
        return self == _NONE

    def where(self, alias: str = "m") -> tuple[str, list[object]]:
        """SQL condition (live memories only) and its parameters."""
        parts = [f"{alias}.deleted = 0"]
        params: list[object] = []
        for column, value in (
            ("scope", self.scope),
            ("domain", self.domain),
            ("category", self.category),
        ):
            if value is not None:
                parts.append(f"{alias}.{column} = ?")
                params.append(value)
        for tag in self.tags:
            parts.append(f"EXISTS (SELECT 1 FROM json_each({alias}.tags) WHERE value = ?)")
            params.append(tag)
        when = f"coalesce({alias}.event_at, {alias}.created_at)"
        if self.since is not None:
            parts.append(f"{when} >= ?")
            params.append(self.since)
        if self.until is not None:
            parts.append(f"{when} < ?")
            params.append(self.until)
        if self.key_prefix is not None:
            parts.append(f"substr({alias}.key, 1, ?) = ?")
            params.extend([len(self.key_prefix), self.key_prefix])
        return " AND ".join(parts), params


_NONE = Filters()
