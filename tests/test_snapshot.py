"""Encrypted snapshots of the vector graph: round trip, refusal of anything not genuine,
and a node that reopens from its snapshot instead of rebuilding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cis import Node
from cis.config import Config
from cis.index.embed import normalize
from cis.store.snapshot import CHUNK, SnapshotFile


def test_round_trip_in_several_chunks(tmp_path: Path) -> None:
    key = os.urandom(32)
    snap = SnapshotFile(tmp_path / "v.snap", key, "model-a")
    payload = os.urandom(CHUNK * 2 + 123)
    snap.save(42, payload)
    assert snap.load() == (42, payload)
    assert (tmp_path / "v.snap").stat().st_mode & 0o777 == 0o600
    assert payload[:64] not in (tmp_path / "v.snap").read_bytes()


def test_anything_not_genuine_is_refused(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "v.snap"
    SnapshotFile(path, key, "model-a").save(7, b"graph bytes" * 1000)
    good = path.read_bytes()
    assert SnapshotFile(path, os.urandom(32), "model-a").load() is None  # other key
    assert SnapshotFile(path, key, "model-b").load() is None  # other model
    for bad in (good[:-1], good[:100], good + b"x", good[:60] + bytes([good[60] ^ 1]) + good[61:]):
        path.write_bytes(bad)
        assert SnapshotFile(path, key, "model-a").load() is None
    path.unlink()
    assert SnapshotFile(path, key, "model-a").load() is None


def test_a_node_reopens_from_its_snapshot(data_dir: Path) -> None:
    config = Config(ann_threshold=300)
    rng = np.random.default_rng(5)
    vectors = normalize(rng.normal(size=(400, 384)).astype(np.float32))
    with Node.open(data_dir, config=config) as node:
        node.memory.add_many({"text": f"item {i}", "embedding": vectors[i]} for i in range(400))
        node.memory.search("x", embedding=vectors[0], mode="vector")
        assert node.memory.index.wait_built(120) and node.memory.index.uses_ann
        before = node.memory.search("x", embedding=vectors[7], mode="vector", limit=5)
    assert (data_dir / "vectors.snap").exists()
    with Node.open(data_dir, config=config, background=False) as node:
        node.memory.add("one more", embedding=vectors[9])  # after the snapshot: from the log
        after = node.memory.search("x", embedding=vectors[7], mode="vector", limit=5)
        assert node.memory.index.uses_ann  # restored, not rebuilt (this node may not build)
        assert [h.memory.id for h in after] == [h.memory.id for h in before]
        top = node.memory.search("x", embedding=vectors[9], mode="vector", limit=2)
        assert {h.memory.text for h in top} == {"item 9", "one more"}
        # a deleted memory leaves the viewed graph: it is copied, then changed
        node.memory.delete(before[1].memory.id)
        again = node.memory.search("x", embedding=vectors[7], mode="vector", limit=5)
        assert [h.memory.id for h in again] == [h.memory.id for h in before if h != before[1]] + [
            again[-1].memory.id
        ]
