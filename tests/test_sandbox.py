"""Hostile WASM skills: the whole store bounded by memory_mb (tables, memories, instances
too), bad buffers and floods of output as SkillErrors, input kept off the disk, grants of
the data dir refused, and a cancel that ends only its own run's calls. The modules are
written in WAT here, so each misbehaves in exactly one way."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import wasmtime

from cis import Node
from cis.errors import SkillError
from cis.skills.calls import CallGroup

from .conftest import CliRunner
from .test_skills import TORTURE, copy_skill

WASI = '(import "wasi_snapshot_preview1" "{0}" (func ${0} {1}))'
TABLE_BOMB = """(module
  (table $t (export "table") 1 funcref)
  (func (export "_start")
    (loop $more
      (if (i32.eq (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))
        (then unreachable))
      (br $more))))"""
MANY_MEMORIES = (
    "(module " + " ".join("(memory 256)" for _ in range(61)) + ' (func (export "_start")))'
)
BAD_ALLOC = """(module
  (import "cis" "memory_search" (func $search (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\\"query\\": \\"x\\"}")
  (func (export "cis_alloc") (param i32) (result i32) (i32.const 0x7fff0000))
  (func (export "_start") (drop (call $search (i32.const 0) (i32.const 14)))))"""
BAD_REQUEST = """(module
  (import "cis" "memory_search" (func $search (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "cis_alloc") (param i32) (result i32) (i32.const 16))
  (func (export "_start") (drop (call $search (i32.const 60000) (i32.const 9000)))))"""
FLOOD = (
    """(module
  """
    + WASI.format("fd_write", "(param i32 i32 i32 i32) (result i32)")
    + """
  (memory (export "memory") 2)
  (data (i32.const 0) "\\10\\00\\00\\00\\00\\00\\01\\00")
  (func (export "_start") (local $i i32)
    (loop $more
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 300))))))"""
)


def wat_skill(into: Path, name: str, wat: str, **grants: Any) -> Path:
    skill = into / name
    skill.mkdir(parents=True)
    (skill / f"{name}.wasm").write_bytes(wasmtime.wat2wasm(wat))
    permissions = "".join(f"{k} = {json.dumps(v)}\n" for k, v in grants.items())
    (skill / "skill.toml").write_text(
        f'[skill]\nname = "{name}"\nentry = "{name}.wasm"\n'
        f"[permissions]\n{permissions}[limits]\nmemory_mb = 16\ntimeout_ms = 10000\n"
    )
    return skill


def test_a_table_bomb_stops_at_the_memory_limit(node: Node, tmp_path: Path) -> None:
    node.skills.install(wat_skill(tmp_path, "tables", TABLE_BOMB))
    me = psutil.Process()
    before = me.memory_info().rss
    with pytest.raises(SkillError, match=r"hit its memory limit \(limits.memory_mb = 16\)"):
        node.skills.run("tables", {})
    assert me.memory_info().rss - before < 64 * 1024 * 1024  # it reached 3.2 GB unbounded


def test_many_memories_are_refused_whole(node: Node, tmp_path: Path) -> None:
    node.skills.install(wat_skill(tmp_path, "memories", MANY_MEMORIES))
    with pytest.raises(SkillError, match="needs more than its memory limit"):
        node.skills.run("memories", {})


def test_a_refused_memory_grow_reads_as_the_memory_limit(node: Node) -> None:
    node.skills.install(TORTURE)
    with pytest.raises(SkillError, match=r"hit its memory limit .* out of memory after"):
        node.skills.run("torture", {"mode": "bomb"})


@pytest.mark.parametrize(
    "wat, expect",
    [
        (BAD_ALLOC, r"bad buffer: cis_alloc\(\d+\) gave 2147418112, not room inside"),
        (BAD_REQUEST, r"bad buffer: memory_search\(60000, 9000\) reaches past its memory"),
        (FLOOD, "wrote more than 16777216 bytes of output"),
    ],
)
def test_bad_buffers_and_floods_are_skill_errors(
    node: Node, tmp_path: Path, wat: str, expect: str
) -> None:
    node.skills.install(wat_skill(tmp_path, "bad", wat, memory_read=True))
    with pytest.raises(SkillError, match=expect):
        node.skills.run("bad", {})


def test_the_cli_keeps_its_json_when_a_skill_misbehaves(cli: CliRunner, tmp_path: Path) -> None:
    cli("init", check=True)
    for name, wat in (("alloc", BAD_ALLOC), ("flood", FLOOD)):
        cli("skill", "install", str(wat_skill(tmp_path, name, wat, memory_read=True)), check=True)
        done = cli("skill", "run", name, "--json")
        assert done.returncode == 12, done.stderr
        assert json.loads(done.stdout)["error"]["code"] == "skill_failed"  # stdout is one JSON
        assert "Traceback" not in done.stderr and "failed custom output" not in done.stdout


def test_a_skills_input_never_touches_the_disk(node: Node, tmp_path: Path) -> None:
    slow = copy_skill(TORTURE, tmp_path, **{"timeout_ms = 2000": "timeout_ms = 60000"})
    node.skills.install(slow)
    marker = f"zz-secret-input-{os.getpid()}"
    failed: list[str] = []
    group = node.skills.group()
    payload = {"mode": "loop", "m": marker}
    call = threading.Thread(target=lambda: _run_into(node, payload, group, failed))
    call.start()
    deadline = time.monotonic() + 30
    while group.runtime.active == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    leaked = [
        p
        for p in Path(tempfile.gettempdir()).glob("cis-skill-*")
        if p.is_file() and marker.encode() in p.read_bytes()
    ]
    group.interrupt()
    call.join(30)
    group.close()
    assert leaked == []
    assert failed and "interrupted" in failed[0]


def _run_into(node: Node, payload: Any, group: CallGroup, failed: list[str]) -> None:
    try:
        node.skills.run("torture", payload, group)
    except SkillError as exc:
        failed.append(str(exc))


def test_grants_that_reach_the_data_dir_are_refused_unless_forced(
    node: Node, data_dir: Path, tmp_path: Path, cli: CliRunner
) -> None:
    for granted in ("/", str(data_dir.parent), str(data_dir / "skills"), str(data_dir)):
        skill = copy_skill(
            TORTURE,
            tmp_path / granted.replace("/", "_"),
            **{"[limits]": f'[permissions]\nfilesystem = ["{granted}"]\n[limits]'},
        )
        with pytest.raises(SkillError, match="holds or lies in the node's data dir"):
            node.skills.install(skill)
    assert node.skills.installed() == []
    node.skills.install(skill, force=True)
    assert node.skills.run("torture", {"mode": f"read:{data_dir}/db.key"}).output == {"bytes": 65}
    refused = cli("skill", "install", str(skill))
    assert refused.returncode == 12 and "--force" in refused.stderr
    assert cli("skill", "install", str(skill), "--force").returncode == 0


def test_a_cancel_ends_only_its_own_runs_calls(node: Node, tmp_path: Path) -> None:
    slow = copy_skill(TORTURE, tmp_path, **{"timeout_ms = 2000": "timeout_ms = 60000"})
    node.skills.install(slow)
    flow = tmp_path / "spin.toml"
    flow.write_text(
        '[dag]\nname = "spin"\n[[dag.tasks]]\nid = "s"\nskill = "torture"\n'
        'input = { mode = "loop" }\n'
    )
    runs = [node.dags.start(flow) for _ in range(2)]
    ended: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda r=r: ended.__setitem__(r, node.dags.execute(r)))
        for r in runs
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while any(node.dags.status(r).tasks[0].status != "running" for r in runs):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    node.dags.cancel(runs[0])
    threads[0].join(20)
    assert ended == {runs[0]: "cancelled"}
    assert node.dags.status(runs[1]).tasks[0].status == "running"  # untouched
    node.dags.cancel(runs[1])
    threads[1].join(20)
    assert ended[runs[1]] == "cancelled"
