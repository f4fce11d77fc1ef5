"""The merge of replicated memory states: a join (idempotent, commutative, associative),
and the rules it promises: later writer wins per field, tags add-wins, edits beat
earlier deletes."""

from __future__ import annotations

import itertools
import json
from functools import reduce

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cis.memory.rows import Clocks, clocks, to_state
from cis.net.merge import State, create, edit, merge, retraction

ORIGINS = ("did:key:zA", "did:key:zB", "did:key:zC")
TAGS = ("red", "green", "blue")


def _start() -> State:
    return create("m1", "global", None, 1, 10, ORIGINS[0], {"text": "first"}, ["red"])


actions = st.lists(
    st.tuples(
        st.integers(0, 2),  # which replica acts
        st.sampled_from(["text", "tags", "delete", "category", "thread", "sync"]),
        st.integers(0, 2),  # a value, or the replica synced from
        st.integers(0, 3),  # how far its clock moves (0: a tie with another replica)
    ),
    max_size=30,
)


def _replay(steps: list[tuple[int, str, int, int]]) -> list[State]:
    """Every state the replicas pass through, for a schedule of local edits and syncs."""
    replicas = [_start()] * 3
    clocks = [10, 10, 10]
    seen = [replicas[0]]
    for who, kind, value, step in steps:
        if kind == "sync":
            replicas[who] = merge(replicas[who], replicas[value])
        else:
            clocks[who] = max(clocks[who], replicas[who].last()[0]) + step
            origin = ORIGINS[who]
            state = replicas[who]
            if kind == "text":
                state = edit(state, clocks[who], origin, {"text": f"text {value}"})
            elif kind == "category":
                state = edit(state, clocks[who], origin, {"category": f"c{value}"})
            elif kind == "thread":  # a thread first named on one replica: an optional register
                state = edit(state, clocks[who], origin, {"thread": f"t{value}"})
            elif kind == "tags":
                state = edit(state, clocks[who], origin, {}, TAGS[: value + 1][::-1])
            else:
                state = edit(state, clocks[who], origin, {"alive": False})
            replicas[who] = state
        seen.append(replicas[who])
    return seen


@settings(max_examples=200, deadline=None, derandomize=True)
@given(actions)
def test_merge_is_a_join(steps: list[tuple[int, str, int, int]]) -> None:
    states = _replay(steps)
    a, b, c = states[-1], states[len(states) // 2], states[0]
    assert merge(a, a) == a
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(merge(a, b), b) == merge(a, b)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(actions, st.randoms(use_true_random=False))
def test_every_delivery_order_ends_the_same(steps: list, rng) -> None:  # type: ignore[no-untyped-def]
    states = _replay(steps)
    expected = reduce(merge, states)
    shuffled = states * 2  # duplicated delivery too
    rng.shuffle(shuffled)
    assert reduce(merge, shuffled) == expected


def test_the_later_writer_wins_per_field_and_ties_go_by_origin() -> None:
    base = _start()
    a = edit(base, 20, ORIGINS[0], {"text": "from A"})
    b = edit(base, 20, ORIGINS[1], {"text": "from B", "category": "fact"})
    both = merge(a, b)
    assert both.value("text") == "from B"  # same clock: the greater origin
    c = edit(base, 21, ORIGINS[0], {"category": "note"})
    assert merge(both, c).value("category") == "note"
    assert merge(both, c).value("text") == "from B"  # fields merge one by one


def test_tags_are_add_wins() -> None:
    base = _start()  # tags: red
    removed = edit(base, 20, ORIGINS[0], {}, [])  # A removes red
    added = edit(base, 20, ORIGINS[1], {}, ["red", "blue"])  # B, concurrently, adds blue
    assert merge(removed, added).visible_tags() == ("blue",)
    readded = edit(base, 19, ORIGINS[2], {}, [])  # C removes red ...
    readded = edit(readded, 19 + 1, ORIGINS[2], {}, ["red"])  # ... and adds it again
    assert "red" in merge(removed, readded).visible_tags()  # an add no removal saw wins


def test_a_later_edit_wins_over_a_delete_and_a_later_delete_over_an_edit() -> None:
    base = _start()
    deleted = edit(base, 20, ORIGINS[0], {"alive": False})
    edited = edit(base, 21, ORIGINS[1], {"text": "still here"})
    assert merge(deleted, edited).value("alive") is True
    late_delete = edit(base, 22, ORIGINS[0], {"alive": False})
    assert merge(late_delete, edited).value("alive") is False


def test_a_retraction_carries_no_content() -> None:
    secret = edit(_start(), 30, ORIGINS[0], {"text": "now private", "domain": "private"})
    told = retraction(secret, 30, ORIGINS[0])
    assert set(told.registers) == {"alive", "domain"} and not told.tags
    public = edit(_start(), 20, ORIGINS[0], {"domain": "public"})
    on_peer = merge(public, told)
    assert on_peer.value("alive") is False and on_peer.value("domain") == "private"


def test_merge_refuses_two_memories() -> None:
    other = create("m2", "global", None, 1, 10, ORIGINS[0], {"text": "x"})
    with pytest.raises(ValueError, match="cannot merge"):
        merge(_start(), other)


def test_creation_time_and_identity_fields_merge_deterministically() -> None:
    a = create("k", "global", "key", 5, 10, ORIGINS[0], {"text": "a"})
    b = create("k", "global", "key", 3, 11, ORIGINS[1], {"text": "b"})
    for x, y in itertools.permutations([a, b]):
        assert merge(x, y).created_at == 3 and merge(x, y).value("text") == "b"


def _row(state: State, clocks_blob: bytes) -> tuple[object, ...]:
    """A memories row (STATE_COLUMNS) holding `state`, as apply.py writes it."""
    hlc, origin = state.last()
    v = state.value
    return (
        *(1, state.id, state.key, state.scope, v("domain"), v("category"), v("text")),
        *("[]", json.dumps(v("metadata")), state.created_at, 0, v("event_at"), 1),
        *(origin, hlc, v("thread"), int(not v("alive")), clocks_blob),
    )


@settings(max_examples=100, deadline=None, derandomize=True)
@given(actions)
def test_a_state_survives_its_row_compact_or_in_the_older_full_form(
    steps: list[tuple[int, str, int, int]],
) -> None:
    for state in _replay(steps):
        assert to_state(_row(state, clocks(state))) == state
        origins = list(
            dict.fromkeys(r.origin for r in (*state.registers.values(), *state.tags, *state.untags))
        )
        full = Clocks(
            origins,
            [(n, r.hlc, origins.index(r.origin)) for n, r in state.registers.items()],
            *(
                [(t.hlc, origins.index(t.origin), t.position, t.name) for t in given]
                for given in (state.tags, state.untags)
            ),
        )
        assert to_state(_row(state, msgspec.msgpack.encode(full))) == state
