"""Prometheus rendering, and the query batcher that shares one embedding call."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cis import Node
from cis.index.embed import QueryBatcher
from cis.metrics import Counter, Histogram, render, sample
from cis.model import Hit, Search

from .test_model_change import HashingEmbedder


def test_histogram_renders_cumulative_buckets() -> None:
    h = Histogram("t_seconds", "Latency.", buckets=(0.01, 0.1))
    for value in (0.005, 0.01, 0.05, 3.0):
        h.observe(value, (("route", "/v1/x"),))
    lines = h.render()
    assert lines[:2] == ["# HELP t_seconds Latency.", "# TYPE t_seconds histogram"]
    assert 't_seconds_bucket{route="/v1/x",le="0.01"} 2' in lines
    assert 't_seconds_bucket{route="/v1/x",le="0.1"} 3' in lines
    assert 't_seconds_bucket{route="/v1/x",le="+Inf"} 4' in lines
    assert 't_seconds_count{route="/v1/x"} 4' in lines
    assert h.count((("route", "/v1/x"),)) == 4


def test_counter_and_samples_escape_labels() -> None:
    c = Counter("t_total", "Count.")
    c.inc((("path", 'a"b\\c'),))
    c.inc((("path", 'a"b\\c'),), 2)
    text = render([c.render(), sample("t_gauge", "A gauge.", "gauge", 0.5)])
    assert 't_total{path="a\\"b\\\\c"} 3' in text
    assert text.endswith("t_gauge 0.5\n")


class GatedEmbedder:
    """Embeds by text length; its first call waits for `release`, so calls queue up."""

    model_id = "gated"
    dim = 4

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("queries go through embed_queries")

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        if "boom" in texts:
            raise RuntimeError("model failed")
        self.batches.append(list(texts))
        return np.array([[len(t), 0, 0, 0] for t in texts], dtype=np.float32)


def test_concurrent_queries_share_one_batch() -> None:
    embedder = GatedEmbedder()
    batcher = QueryBatcher(embedder)
    first = batcher.submit("a")
    assert embedder.entered.wait(5)
    waiting = [batcher.submit("b" * n) for n in range(1, 6)]
    embedder.release.set()
    assert first.result(5)[0] == 1
    assert [f.result(5)[0] for f in waiting] == [1, 2, 3, 4, 5]
    assert embedder.batches == [["a"], ["b", "bb", "bbb", "bbbb", "bbbbb"]]
    batcher.close()


def test_a_failed_batch_fails_its_callers_and_the_worker_goes_on() -> None:
    embedder = GatedEmbedder()
    embedder.release.set()
    batcher = QueryBatcher(embedder)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.submit("boom").result(5)
    assert batcher.submit("fine").result(5)[0] == 4
    batcher.close()


class GatedWords(HashingEmbedder):
    """Words hashed into 384 dimensions (a real bag-of-words embedding); queries wait at
    `release`, as GatedEmbedder's do, memories do not."""

    model_id = "gated-words"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        self.batches.append(list(texts))
        return self.embed(texts)


def test_searches_waiting_their_turn_have_their_queries_embedded_together(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = GatedWords()
    with Node.open(data_dir, embedder=embedder, background=False) as node:
        memory = node.memory
        memory.add_many({"text": t} for t in ("otters swim in rivers", "owls hunt at night"))
        memory.flush()
        busy = memory.searcher.queries.submit("the search before")  # holds the worker
        assert embedder.entered.wait(5)
        for query in ("otters swim", "owls hunt", "otters swim"):
            memory.expect(Search(query=query))
        for skipped in (
            Search(query="words only", mode="text"),
            Search(query="no such mode", mode="sideways"),
            Search(query="   "),
            Search(query="x" * (memory.config.max_text_bytes + 1)),
        ):
            memory.expect(skipped)  # nothing to embed ahead: find() refuses or needs none
        # a search that comes while its query is still embedding waits for that one
        asked = threading.Event()
        vector_of = memory.searcher._query_vector

        def noted(query: str) -> object:
            try:
                return vector_of(query)
            finally:
                asked.set()

        monkeypatch.setattr(memory.searcher, "_query_vector", noted)
        found: list[list[Hit]] = []
        searching = threading.Thread(
            target=lambda: found.append(memory.search("otters swim", mode="vector", limit=1))
        )
        searching.start()
        assert asked.wait(5)
        embedder.release.set()
        searching.join(30)
        assert not searching.is_alive()
        busy.result(5)
        owls = memory.search("owls hunt", limit=1)
        assert found[0][0].memory.text == "otters swim in rivers"
        assert owls[0].memory.text == "owls hunt at night"
        # one batch for both, each once; the searches embedded nothing again
        assert embedder.batches == [["the search before"], ["otters swim", "owls hunt"]]
        assert memory.searcher._expected == {}  # nothing held once embedded
