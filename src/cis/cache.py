"""A sharded, TTL'd cache with CLOCK (second-chance LRU) eviction and lock-free reads.

A hit only sets its entry's `referenced` flag, so reads never change a dict's structure
and take no lock; writes and evictions take the lock of one shard. Entries expire by a
coarse clock that one daemon thread refreshes every CLOCK_TICK_S seconds, which spares
each read a clock call. Keys should hash cheaply: strings cache their hash. Statistics
are plain counters, so under heavy thread contention they can undercount by a few.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

import msgspec

V = TypeVar("V")
CLOCK_TICK_S = 0.02
_now = [time.monotonic()]
_ticker: threading.Thread | None = None
_ticker_lock = threading.Lock()


def _tick() -> None:
    while True:
        time.sleep(CLOCK_TICK_S)
        _now[0] = time.monotonic()


def _start_clock() -> None:
    global _ticker
    with _ticker_lock:
        if _ticker is None:
            _ticker = threading.Thread(target=_tick, name="cis-cache-clock", daemon=True)
            _ticker.start()


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


class ShardedCache(Generic[V]):
    """Each shard keeps at most capacity/shards entries; each entry lives `ttl` seconds."""

    def __init__(self, capacity: int = 4096, ttl: float = 300.0, shards: int = 16):
        if shards < 1 or shards & (shards - 1):
            raise ValueError("shards must be a power of two")
        _start_clock()
        self.capacity = capacity
        self.ttl = ttl
        self._per_shard = max(1, capacity // shards)
        self._mask = shards - 1
        # entry: [value, expires_at, referenced]
        self._data: tuple[OrderedDict[Hashable, list[Any]], ...] = tuple(
            OrderedDict() for _ in range(shards)
        )
        self._locks = tuple(threading.Lock() for _ in range(shards))
        self._hits = [0] * shards
        self._misses = [0] * shards
        self._evictions = [0] * shards

    def get(self, key: Hashable, default: Any = None) -> Any:
        shard = hash(key) & self._mask
        data = self._data[shard]
        entry = data.get(key)
        if entry is not None and entry[1] > _now[0]:
            entry[2] = True
            self._hits[shard] += 1
            return entry[0]
        if entry is not None:  # expired: it goes now
            with self._locks[shard]:
                if data.get(key) is entry:
                    del data[key]
        self._misses[shard] += 1
        return default

    def set(self, key: Hashable, value: V) -> None:
        shard = hash(key) & self._mask
        data = self._data[shard]
        with self._locks[shard]:
            data.pop(key, None)
            if len(data) >= self._per_shard:
                self._evict(shard, data, self._per_shard - 1)
            data[key] = [value, time.monotonic() + self.ttl, False]

    def _evict(self, shard: int, data: OrderedDict[Hashable, list[Any]], keep: int) -> None:
        """Down to `keep` entries: the oldest not read since its last second chance, or
        expired (a get drops an expired entry it meets; a sweep of the whole shard for
        them on every set of a full cache cost 0.2 ms a set)."""
        now = time.monotonic()
        while len(data) > keep:
            key, entry = next(iter(data.items()))
            if entry[2] and entry[1] > now:
                entry[2] = False
                data.move_to_end(key)
            else:
                del data[key]
                self._evictions[shard] += 1

    def pop(self, key: Hashable) -> None:
        shard = hash(key) & self._mask
        with self._locks[shard]:
            self._data[shard].pop(key, None)

    def clear(self) -> None:
        for lock, data in zip(self._locks, self._data, strict=True):
            with lock:
                data.clear()

    def stats(self) -> CacheStats:
        return CacheStats(
            size=sum(len(d) for d in self._data),
            capacity=self._per_shard * len(self._data),
            hits=sum(self._hits),
            misses=sum(self._misses),
            evictions=sum(self._evictions),
        )
