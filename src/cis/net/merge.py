"""The merge of a memory's replicated state: a pure function, the same on every node.

Every field of a memory is a last-writer-wins register ordered by (HLC stamp, origin
DID), a total order. Tags are an add-wins set: each add is unique (its stamp and
origin), a removal names the adds it saw, so an add no removal saw survives. Whether
the memory lives is a register too (`alive`): a delete writes False, every edit True,
so a later edit wins over a delete and a later delete over an edit. A memory's id,
scope, key and creation time never change. Merging is idempotent, commutative and
associative, so replicas that saw the same states agree whatever the order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

REGISTERS = ("text", "domain", "category", "metadata", "event_at", "thread", "alive")
_DEFAULTS: dict[str, Any] = {
    "text": "",
    "domain": "private",
    "category": "context",
    "metadata": {},
    "event_at": None,
    "thread": None,
    "alive": False,
}
# written on creation only when given: a peer of an older CIS refuses a register it does
# not know, so memories without a thread still travel to it
OPTIONAL = frozenset({"thread"})
_SORTED = sorted(_DEFAULTS)
_canonical = msgspec.msgpack.Encoder(order="deterministic")


# gc=False on the structs a write makes by the thousand (here, Change, NewMemory, Applied,
# Memory, Hit): their fields are strings, numbers, checked JSON values and other such
# structs, never a reference back, so the cycle collector need not track them. Tracked,
# three bulk adds of 100k ran 61 full collections of 16-28 ms, each finding nothing and
# holding the interpreter throughout; untracked, 1.
class Register(msgspec.Struct, frozen=True, array_like=True, gc=False):
    hlc: int
    origin: str
    value: Any

    def rank(self) -> tuple[int, str, bytes]:
        """Its place in the total order; equal stamps (only from a forger) fall back to
        the value's bytes, so even they merge the same everywhere."""
        return self.hlc, self.origin, _canonical.encode(self.value)


class Tag(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """One add of a tag; `position` keeps the order of the tags one change gave."""

    hlc: int
    origin: str
    position: int
    name: str


class State(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: str
    scope: str
    key: str | None
    created_at: int
    registers: dict[str, Register]
    tags: tuple[Tag, ...] = ()
    untags: tuple[Tag, ...] = ()  # adds that a removal saw

    def value(self, name: str) -> Any:
        found = self.registers.get(name)
        return _DEFAULTS[name] if found is None else found.value

    def visible_tags(self) -> tuple[str, ...]:
        """The tags of the memory: each by its first add no removal saw."""
        if not self.untags:
            return tuple(dict.fromkeys(t.name for t in self.tags))
        removed = set(self.untags)
        out: dict[str, None] = {}
        for tag in self.tags:  # sorted by stamp, then position
            if tag not in removed:
                out.setdefault(tag.name, None)
        return tuple(out)

    def last(self) -> tuple[int, str]:
        """The stamp and origin of its latest change (a removal of tags writes `alive`)."""
        stamps = [(r.hlc, r.origin) for r in self.registers.values()]
        if self.tags:  # sorted: the last add is the latest
            stamps.append((self.tags[-1].hlc, self.tags[-1].origin))
        return max(stamps, default=(0, ""))


def _sorted_registers(registers: Mapping[str, Register]) -> dict[str, Register]:
    return {name: registers[name] for name in sorted(registers)}


def merge(a: State, b: State) -> State:
    """The state that holds both: per register the later write, the union of tag adds
    and of removals."""
    if a.id != b.id:
        raise ValueError(f"cannot merge memory {a.id} with {b.id}")
    registers = dict(a.registers)
    for name, theirs in b.registers.items():
        mine = registers.get(name)
        if mine is None or theirs.rank() > mine.rank():
            registers[name] = theirs
    first = min(a, b, key=lambda s: (s.scope, s.key or "", s.created_at))
    return State(
        id=a.id,
        scope=first.scope,
        key=first.key,
        created_at=min(a.created_at, b.created_at),
        registers=_sorted_registers(registers),
        tags=tuple(sorted({*a.tags, *b.tags})),
        untags=tuple(sorted({*a.untags, *b.untags})),
    )


def edit(
    state: State,
    hlc: int,
    origin: str,
    values: Mapping[str, Any],
    tags: Iterable[str] | None = None,
) -> State:
    """`state` after a local change at (hlc, origin): the given registers written, the
    tags set to `tags` if given; `alive` is written too (True unless given)."""
    registers = dict(state.registers)
    for name, value in {"alive": True, **values}.items():
        if name not in _DEFAULTS:
            raise ValueError(f"no register {name!r}")
        registers[name] = Register(hlc, origin, value)
    adds, removes = state.tags, state.untags
    if tags is not None:
        wanted = list(dict.fromkeys(tags))
        have = state.visible_tags()
        new = [Tag(hlc, origin, i, name) for i, name in enumerate(wanted) if name not in have]
        gone = {name for name in have if name not in wanted}
        removed = set(removes)
        seen = [t for t in adds if t.name in gone and t not in removed]
        adds = tuple(sorted({*adds, *new}))
        removes = tuple(sorted({*removes, *seen}))
    return msgspec.structs.replace(
        state, registers=_sorted_registers(registers), tags=adds, untags=removes
    )


def create(
    memory_id: str,
    scope: str,
    key: str | None,
    created_at: int,
    hlc: int,
    origin: str,
    values: Mapping[str, Any],
    tags: Iterable[str] = (),
) -> State:
    """The state of a new memory: every register written at (hlc, origin)."""
    given = {**_DEFAULTS, **values, "alive": True}
    return State(
        id=memory_id,
        scope=scope,
        key=key,
        created_at=created_at,
        registers={
            name: Register(hlc, origin, given[name])
            for name in _SORTED
            if given[name] is not None or name not in OPTIONAL
        },
        tags=tuple(Tag(hlc, origin, i, name) for i, name in enumerate(dict.fromkeys(tags))),
    )


def retraction(state: State, hlc: int, origin: str) -> State:
    """What the cluster learns of a memory made private: that it is private and gone,
    with none of its content."""
    return State(
        id=state.id,
        scope=state.scope,
        key=state.key,
        created_at=state.created_at,
        registers={
            "alive": Register(hlc, origin, False),
            "domain": Register(hlc, origin, "private"),
        },
    )


def canonical(state: State) -> bytes:
    """The state's bytes, the same on every node for the same state."""
    return _canonical.encode(state)
