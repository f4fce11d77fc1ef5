"""The batch indexer's bounds, and cache invalidation by writes."""

from __future__ import annotations

from pathlib import Path

from cis import Node
from cis.config import Config


def test_backpressure_bounds_the_backlog(data_dir: Path) -> None:
    cap = 4
    with Node.open(data_dir, config=Config(queue_max_items=cap, embed_batch_size=2)) as node:
        for i in range(12):
            node.memory.add(f"bounded backlog item {i}")
            assert node.memory.indexer.backlog <= cap
        assert node.memory.flush(timeout=60)
        assert node.status().vectors == 12


def test_backpressure_starts_embedding_when_nothing_runs_in_background(data_dir: Path) -> None:
    config = Config(queue_max_items=3, embed_batch_size=2)
    with Node.open(data_dir, config=config, background=False) as node:
        for i in range(8):  # would wait forever if waiting did not start the worker
            node.memory.add(f"foreground item {i}")
        assert node.memory.indexer.backlog <= 3


def test_a_write_drops_only_the_results_it_can_change(node: Node) -> None:
    node.memory.add("alpine lakes are cold", scope="project/a")
    node.memory.add("alpine meadows bloom", scope="project/b")
    node.memory.flush()
    first = node.memory.search("alpine", scope="project/a")
    hits_before = node.memory.cache.stats().hits
    node.memory.add("alpine huts are cosy", scope="project/b")  # another scope
    assert node.memory.search("alpine", scope="project/a") == first
    assert node.memory.cache.stats().hits == hits_before + 1  # served from the cache
    node.memory.add("alpine glaciers retreat", scope="project/a")  # the same scope
    again = node.memory.search("alpine", scope="project/a", mode="text")
    assert "alpine glaciers retreat" in {h.memory.text for h in again}


def test_a_write_by_another_process_reaches_cached_reads(data_dir: Path) -> None:
    with Node.open(data_dir) as mine, Node.open(data_dir) as other:
        m = mine.memory.set("cfg/mode", "dark")
        assert mine.memory.get("cfg/mode") == m  # now cached here
        other.memory.update(m.id, "light")
        assert mine.memory.get("cfg/mode").text == "light"
