"""Cache get hit latency and single-thread throughput, against a plain locked LRU."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from common import emit, median

from cis.cache import ShardedCache

KEYS = 4096
ROUNDS = 30
BATCH = 20_000


class LockedLRU:
    """The naive baseline: one lock around an OrderedDict, TTL checked on every get."""

    def __init__(self, capacity: int, ttl: float):
        self.data: OrderedDict[Any, tuple[Any, float]] = OrderedDict()
        self.lock = threading.Lock()
        self.capacity, self.ttl = capacity, ttl

    def get(self, key: Any, default: Any = None) -> Any:
        with self.lock:
            entry = self.data.get(key)
            if entry is None or entry[1] < time.monotonic():
                return default
            self.data.move_to_end(key)
            return entry[0]

    def set(self, key: Any, value: Any) -> None:
        with self.lock:
            self.data[key] = (value, time.monotonic() + self.ttl)
            self.data.move_to_end(key)
            while len(self.data) > self.capacity:
                self.data.popitem(last=False)


def per_get_seconds(cache: Any) -> list[float]:
    keys = [f"search|3|7|10|hybrid|global|what does billing use {i}" for i in range(KEYS)]
    for k in keys:
        cache.set(k, k)
    work = (keys * (BATCH // KEYS + 1))[:BATCH]
    get = cache.get
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for k in work:
            get(k)
        samples.append((time.perf_counter() - start) / BATCH)
    return samples


def main() -> None:
    ours = per_get_seconds(ShardedCache(capacity=KEYS * 2, ttl=300, shards=16))
    naive = per_get_seconds(LockedLRU(capacity=KEYS * 2, ttl=300))
    p50, base = median(ours), median(naive)
    emit(
        "cache_get_hit",
        p50_us=p50 * 1e6,
        gets_per_s=1 / p50,
        baseline_locked_lru_p50_us=base * 1e6,
        speedup_vs_locked_lru=base / p50,
        note=f"median over {ROUNDS} rounds of {BATCH} hits (loop overhead included)",
    )


if __name__ == "__main__":
    main()
