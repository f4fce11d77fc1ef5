from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

import cis.cache as clock
from cis.cache import ShardedCache


def test_get_set_pop_clear_and_stats() -> None:
    cache: ShardedCache[int] = ShardedCache(capacity=64, ttl=60, shards=4)
    assert cache.get("a") is None
    cache.set("a", 1)
    assert cache.get("a") == 1
    cache.pop("a")
    assert cache.get("a", "gone") == "gone"
    cache.set("b", 2)
    cache.clear()
    assert cache.get("b") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (1, 3, 0)
    assert 0 < stats.hit_ratio < 1


def test_entries_expire_after_ttl_and_leave_room() -> None:
    cache: ShardedCache[int] = ShardedCache(capacity=2, ttl=0.05, shards=1)
    cache.set("old", 1)
    assert cache.get("old") == 1
    expires = time.monotonic() + 0.05
    while clock._now[0] <= expires:  # until the coarse clock has passed the TTL
        time.sleep(0.01)
    assert cache.get("old") is None
    cache.ttl = 60
    cache.set("a", 2)
    cache.set("b", 3)  # over capacity: the expired entry goes, not the live ones
    assert (cache.get("a"), cache.get("b")) == (2, 3)
    assert cache.stats().size == 2


def test_an_expired_entry_gets_no_second_chance() -> None:
    cache: ShardedCache[int] = ShardedCache(capacity=2, ttl=0.05, shards=1)
    cache.set("old", 1)
    assert cache.get("old") == 1  # read: a live entry would be kept once more
    expires = time.monotonic() + 0.05
    while time.monotonic() <= expires:  # past the TTL; the coarse clock may lag behind
        time.sleep(0.01)
    cache.ttl = 60
    cache.set("a", 2)
    cache.set("b", 3)  # over capacity: the expired entry goes, not a live one
    assert cache.stats().size == 2 and cache.stats().evictions == 1
    assert (cache.get("a"), cache.get("b")) == (2, 3)


def test_least_recently_used_is_evicted() -> None:
    cache: ShardedCache[int] = ShardedCache(capacity=2, ttl=60, shards=1)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.get("a")  # b is now the oldest
    cache.set("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1 and cache.get("c") == 3
    assert cache.stats().evictions == 1


def test_shard_count_must_be_power_of_two() -> None:
    try:
        ShardedCache(shards=3)
    except ValueError:
        return
    raise AssertionError("accepted 3 shards")


ops = st.lists(
    st.tuples(st.sampled_from(["get", "set", "pop"]), st.integers(0, 12), st.integers()),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, capacity=st.integers(1, 6))
def test_never_returns_a_stale_value_and_respects_capacity(
    ops: list[tuple[str, int, int]], capacity: int
) -> None:
    """What CLOCK eviction guarantees: the last value set or nothing, never too many entries,
    the newest entry kept, and no eviction at all while the keys have always fit."""
    cache: ShardedCache[int] = ShardedCache(capacity=capacity, ttl=3600, shards=1)
    model: dict[int, int] = {}
    overflowed = False  # once more keys than capacity were held, older ones may be gone
    for op, key, value in ops:
        if op == "set":
            model[key] = value
            overflowed = overflowed or len(model) > capacity
            cache.set(key, value)
            assert cache.get(key) == value
        elif op == "pop":
            model.pop(key, None)
            cache.pop(key)
        else:
            got = cache.get(key)
            assert got is None or got == model.get(key)
            if not overflowed:
                assert got == model.get(key)
        assert cache.stats().size <= capacity
