"""WASM skills: install, manifests, the sandbox's limits, host functions, module cache,
hot reload. The modules are built from the C beside them (see each skill.toml)."""

from __future__ import annotations

import shutil
import tarfile
import time
from pathlib import Path

import pytest

from cis import Node
from cis.errors import InvalidInput, NotFound, SkillError

ROOT = Path(__file__).parents[1]
WORDCOUNT = ROOT / "examples" / "skills" / "wordcount"
RECALL = ROOT / "examples" / "skills" / "recall"
TORTURE = ROOT / "tests" / "fixtures" / "skills" / "torture"


def copy_skill(source: Path, into: Path, **changes: str) -> Path:
    target = into / source.name
    shutil.copytree(source, target)
    manifest = (target / "skill.toml").read_text()
    for old, new in changes.items():
        manifest = manifest.replace(old, new)
    (target / "skill.toml").write_text(manifest)
    return target


def test_install_list_info_remove(node: Node, tmp_path: Path) -> None:
    archive = tmp_path / "recall.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(RECALL, arcname="recall")
    node.skills.install(WORDCOUNT)
    node.skills.install(archive)
    assert [m.skill.name for m in node.skills.installed()] == ["recall", "wordcount"]
    assert node.skills.get("recall").permissions.memory_read is True
    node.skills.remove("wordcount")
    with pytest.raises(NotFound):
        node.skills.run("wordcount", {})


@pytest.mark.parametrize(
    ("changes", "expect"),
    [
        ({'type = "wasm"': 'type = "remote"'}, "URL of its run endpoint"),
        ({'type = "wasm"': 'type = "lisp"'}, "Invalid enum value 'lisp'"),
        ({'type = "wasm"': 'type = "python"'}, "use module:function"),
        ({'entry = "wordcount.wasm"': 'entry = "../../etc/passwd"'}, "not a file inside"),
        ({"memory_mb = 32": "memory_mb = 0"}, "memory_mb"),
        ({"[limits]": "[limits]\ncpu = 1"}, "unknown field"),
        ({'name = "wordcount"': 'name = "Word Count"'}, "name"),
    ],
)
def test_bad_manifests_are_refused(
    node: Node, tmp_path: Path, changes: dict[str, str], expect: str
) -> None:
    with pytest.raises(InvalidInput, match=expect):
        node.skills.install(copy_skill(WORDCOUNT, tmp_path, **changes))
    assert node.skills.installed() == []


def test_an_archive_cannot_write_outside(node: Node, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(evil, arcname="../../escaped.txt")
    with pytest.raises(InvalidInput, match="cannot unpack"):
        node.skills.install(archive)


def test_skills_run_and_read_memory_only_when_permitted(node: Node) -> None:
    node.memory.add("The VPN config is in the team vault")
    node.skills.install(WORDCOUNT)
    node.skills.install(RECALL)
    node.skills.install(TORTURE)
    counted = node.skills.run("wordcount", {"text": "sandboxed but useful"})
    assert counted.output == {"words": 3, "characters": 20}
    assert "3 words" in counted.log
    found = node.skills.run("recall", {"query": "where is the vpn config", "limit": 3})
    assert found.output["found"]["ok"][0]["memory"]["text"].startswith("The VPN")
    with pytest.raises(SkillError, match=r"forbidden: memory_search needs permissions\.memory_"):
        node.skills.run("torture", {"mode": "search"})


@pytest.mark.parametrize(
    ("mode", "expect"),
    [
        ("loop", "timed out after 2000 ms"),
        ("bomb", "out of memory after"),
        ("trap", "trapped: wasm `unreachable`"),
        ("exit3", "exited with code 3; its log ends: giving up"),
        ("garbage", "not JSON"),
    ],
)
def test_a_misbehaving_skill_ends_its_call_only(node: Node, mode: str, expect: str) -> None:
    node.skills.install(TORTURE)
    with pytest.raises(SkillError, match=expect):
        node.skills.run("torture", {"mode": mode})
    assert node.skills.run("torture", {"mode": "fine"}).output == {"ok": True}


def test_fuel_limit(node: Node, tmp_path: Path) -> None:
    node.skills.install(
        copy_skill(TORTURE, tmp_path, **{"timeout_ms = 2000": "timeout_ms = 2000\nfuel = 100000"})
    )
    with pytest.raises(SkillError, match="ran out of fuel"):
        node.skills.run("torture", {"mode": "loop"})


def test_hot_reload_and_the_disk_cache(node: Node, data_dir: Path) -> None:
    node.skills.install(WORDCOUNT)
    assert node.skills.run("wordcount", {"text": "a b"}).output == {"words": 2, "characters": 3}
    cached = list((data_dir / "cache" / "wasm").glob("*.cwasm"))
    assert len(cached) == 1
    installed = data_dir / "skills" / "wordcount" / "wordcount.wasm"
    installed.write_bytes((TORTURE / "torture.wasm").read_bytes())  # a changed module
    assert node.skills.run("wordcount", {"mode": "fine"}).output == {"ok": True}
    assert len(list((data_dir / "cache" / "wasm").glob("*.cwasm"))) == 2
    installed.write_bytes(b"not wasm at all")
    with pytest.raises(InvalidInput, match="not a valid WASM module"):
        node.skills.run("wordcount", {})


def test_routing_by_description(node: Node) -> None:
    node.skills.install(WORDCOUNT)
    node.skills.install(RECALL)
    ranked = node.skills.route("how many words does this essay have")
    assert ranked[0][1].skill.name == "wordcount"
    assert ranked[0][0] > ranked[1][0]


def test_native_and_workflow_skills(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shout = tmp_path / "shout"
    shout.mkdir()
    (shout / "skill.toml").write_text(
        '[skill]\nname = "shout"\ntype = "python"\nentry = "loud:run"\n'
        'description = "Shout a text"\n[limits]\ntimeout_ms = 5000\nmemory_mb = 512\n'
    )
    (shout / "loud.py").write_text(
        "import os, sys\n"
        "def run(data):\n"
        "    print('shouting', file=sys.stderr)\n"
        "    if data.get('hang'):\n"
        "        import time; time.sleep(60)\n"
        "    return {'text': data['text'].upper(), 'secret': os.environ.get('CIS_PASSPHRASE')}\n"
    )
    monkeypatch.setenv("CIS_PASSPHRASE", "do-not-leak")
    node.skills.install(shout)
    called = node.skills.run("shout", {"text": "hi"})
    assert called.output == {"text": "HI", "secret": None} and "shouting" in called.log
    node.skills.install(
        copy_skill(shout, tmp_path / "b", **{"timeout_ms = 5000": "timeout_ms = 300"})
    )
    with pytest.raises(SkillError, match="timed out after 300 ms"):
        node.skills.run("shout", {"text": "x", "hang": True})

    echo = tmp_path / "echo"
    echo.mkdir()
    (echo / "skill.toml").write_text(
        '[skill]\nname = "echo"\ntype = "command"\nentry = "./echo.sh --flag"\n'
    )
    (echo / "echo.sh").write_text('#!/bin/sh\necho "{\\"args\\": \\"$1\\", \\"in\\": $(cat)}"\n')
    (echo / "echo.sh").chmod(0o755)
    node.skills.install(echo)
    assert node.skills.run("echo", {"a": 1}).output == {"args": "--flag", "in": {"a": 1}}

    flow = tmp_path / "flow"
    flow.mkdir()
    (flow / "skill.toml").write_text(
        '[skill]\nname = "greet"\ntype = "dag"\nentry = "greet.toml"\n'
    )
    (flow / "greet.toml").write_text(
        '[dag]\nname = "greet"\n[[dag.tasks]]\nid = "hello"\n'
        'command = "echo hello {{ inputs.who }}"\n'
    )
    node.skills.install(flow)
    assert node.skills.run("greet", {"who": "Kim"}).output["outputs"] == {"hello": "hello Kim"}


def test_files_are_out_of_reach_unless_granted(node: Node, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("twelve bytes")
    node.skills.install(TORTURE)
    with pytest.raises(SkillError, match="exited with code 4; its log ends: cannot open"):
        node.skills.run("torture", {"mode": f"read:{shared}/notes.txt"})
    granted = copy_skill(
        TORTURE, tmp_path, **{"[limits]": f'[permissions]\nfilesystem = ["{shared}"]\n[limits]'}
    )
    node.skills.install(granted)
    assert node.skills.run("torture", {"mode": f"read:{shared}/notes.txt"}).output == {"bytes": 12}


def test_a_running_call_keeps_its_module_while_a_new_one_is_installed(
    node: Node, tmp_path: Path
) -> None:
    import threading

    node.skills.install(copy_skill(TORTURE, tmp_path, **{'name = "torture"': 'name = "swap"'}))
    installed = node.skills.root / "swap" / "torture.wasm"
    outcome: list[str] = []

    def old_call() -> None:
        try:
            node.skills.run("swap", {"mode": "loop"})
        except SkillError as exc:
            outcome.append(str(exc))

    running = threading.Thread(target=old_call)
    running.start()
    deadline = time.monotonic() + 30
    while node.skills.calls.runtime.active == 0:  # the old module is looping now
        assert time.monotonic() < deadline
        time.sleep(0.01)
    installed.write_bytes((WORDCOUNT / "wordcount.wasm").read_bytes())
    assert node.skills.run("swap", {"text": "new module"}).output == {"words": 2, "characters": 10}
    running.join(10)
    assert outcome and "timed out" in outcome[0]
