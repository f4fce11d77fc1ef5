"""Counters and latency histograms, rendered in the Prometheus text format (0.0.4)."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence

# seconds: from a cache hit to a slow cold search
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    """Cumulative-bucket histogram per label set; observe() is thread-safe."""

    def __init__(self, name: str, help: str, buckets: Sequence[float] = LATENCY_BUCKETS):
        self.name = name
        self.help = help
        self.buckets = tuple(buckets)
        self._series: dict[Labels, list[float]] = {}  # bucket counts..., sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, labels: Labels = ()) -> None:
        slot = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self.buckets) + 3)
            series[slot] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, labels: Labels = ()) -> int:
        with self._lock:
            series = self._series.get(labels)
            return 0 if series is None else int(series[-1])

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            snapshot = {labels: list(series) for labels, series in self._series.items()}
        for labels, series in sorted(snapshot.items()):
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), series, strict=False):
                running += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(labels, le)} {_number(running)}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(series[-2])}")
            lines.append(f"{self.name}_count{_labels(labels)} {_number(series[-1])}")
        return lines


class Counter:
    """Monotonic count per label set; inc() is thread-safe."""

    def __init__(self, name: str, help: str):
        self.name = name
        self.help = help
        self._series: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            self._series[labels] = self._series.get(labels, 0.0) + amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            snapshot = sorted(self._series.items())
        lines += [f"{self.name}{_labels(labels)} {_number(value)}" for labels, value in snapshot]
        return lines


def sample(name: str, help: str, kind: str, value: float) -> list[str]:
    """One unlabelled gauge or counter read at scrape time."""
    return [f"# HELP {name} {help}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]


def render(blocks: Iterable[list[str]]) -> str:
    return "\n".join(line for block in blocks for line in block) + "\n"
