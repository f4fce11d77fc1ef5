from __future__ import annotations

import time
from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_entries_expire_after_ttl() -> None:
    cache: ShardedCache[int] = ShardedCache(capacity=8, ttl=0.05, shards=1)
    cache.set("k", 1)
    assert cache.get("k") == 1
    time.sleep(0.08)
    assert cache.get("k") is None
    assert cache.stats().size == 0


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


@settings(max_examples=200, deadline=None)
@given(ops=ops, capacity=st.integers(1, 6))
def test_behaves_like_a_reference_lru(ops: list[tuple[str, int, int]], capacity: int) -> None:
    cache: ShardedCache[int] = ShardedCache(capacity=capacity, ttl=3600, shards=1)
    model: OrderedDict[int, int] = OrderedDict()
    for op, key, value in ops:
        if op == "set":
            model[key] = value
            model.move_to_end(key)
            while len(model) > capacity:
                model.popitem(last=False)
            cache.set(key, value)
        elif op == "pop":
            model.pop(key, None)
            cache.pop(key)
        else:
            expected = model.get(key)
            if expected is not None:
                model.move_to_end(key)
            assert cache.get(key) == expected
    assert cache.stats().size == len(model)
