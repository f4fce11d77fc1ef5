"""A sharded, TTL'd LRU cache whose reads take no lock.

Reads rely on single dict / OrderedDict operations being atomic under the GIL; writes
and evictions take the lock of one shard. Statistics are plain counters, so under
heavy thread contention they can undercount by a few.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from time import monotonic
from typing import Any, Generic, TypeVar

import msgspec

V = TypeVar("V")
_MISSING: Any = object()


class CacheStats(msgspec.Struct, frozen=True):
    size: int
    capacity: int
    hits: int
    misses: int
    evictions: int

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class _Shard:
    __slots__ = ("data", "evictions", "hits", "lock", "misses")

    def __init__(self) -> None:
        self.data: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0


class ShardedCache(Generic[V]):
    """LRU per shard; each entry lives `ttl` seconds at most."""

    def __init__(self, capacity: int = 4096, ttl: float = 300.0, shards: int = 16):
        if shards < 1 or shards & (shards - 1):
            raise ValueError("shards must be a power of two")
        self.capacity = capacity
        self.ttl = ttl
        self._per_shard = max(1, capacity // shards)
        self._mask = shards - 1
        self._shards = tuple(_Shard() for _ in range(shards))

    def get(self, key: Hashable, default: Any = None) -> Any:
        shard = self._shards[hash(key) & self._mask]
        entry = shard.data.get(key, _MISSING)
        if entry is _MISSING:
            shard.misses += 1
            return default
        if entry[1] < monotonic():
            shard.misses += 1
            shard.data.pop(key, None)
            return default
        try:  # noqa: SIM105 (contextlib.suppress costs more on this hot path)
            shard.data.move_to_end(key)
        except KeyError:  # removed by another thread in between
            pass
        shard.hits += 1
        return entry[0]

    def set(self, key: Hashable, value: V) -> None:
        shard = self._shards[hash(key) & self._mask]
        with shard.lock:
            data = shard.data
            data[key] = (value, monotonic() + self.ttl)
            data.move_to_end(key)
            while len(data) > self._per_shard:
                data.popitem(last=False)
                shard.evictions += 1

    def pop(self, key: Hashable) -> None:
        shard = self._shards[hash(key) & self._mask]
        with shard.lock:
            shard.data.pop(key, None)

    def clear(self) -> None:
        for shard in self._shards:
            with shard.lock:
                shard.data.clear()

    def stats(self) -> CacheStats:
        return CacheStats(
            size=sum(len(s.data) for s in self._shards),
            capacity=self._per_shard * len(self._shards),
            hits=sum(s.hits for s in self._shards),
            misses=sum(s.misses for s in self._shards),
            evictions=sum(s.evictions for s in self._shards),
        )
