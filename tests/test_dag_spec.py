"""Workflow files: the three formats agree, and every mistake is named with its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cis.dag.spec import _find_cycle, load, parse, render
from cis.errors import InvalidInput

TOML = """\
[dag]
name = "release"
policy = "allow_failures"

[[dag.tasks]]
id = "test"
command = "pytest -q"
retry = 2
timeout_secs = 600
env = { CI = "1" }

[[dag.tasks]]
id = "notes"
agent = "claude"
prompt = "Write release notes from: {{ tasks.test.output }}"
deps = ["test"]
"""

YAML = """\
dag:
  name: release
  policy: allow_failures
  tasks:
    - id: test
      command: pytest -q
      retry: 2
      timeout_secs: 600
      env: {CI: "1"}
    - id: notes
      agent: claude
      prompt: "Write release notes from: {{ tasks.test.output }}"
      deps: [test]
"""


def test_toml_yaml_and_json_give_the_same_spec(tmp_path: Path) -> None:
    from_toml = parse(TOML, "r.toml")
    assert parse(YAML, "r.yaml") == from_toml
    as_json = {
        "dag": {
            "name": "release",
            "policy": "allow_failures",
            "tasks": [
                {
                    "id": "test",
                    "command": "pytest -q",
                    "retry": 2,
                    "timeout_secs": 600,
                    "env": {"CI": "1"},
                },
                {
                    "id": "notes",
                    "agent": "claude",
                    "deps": ["test"],
                    "prompt": "Write release notes from: {{ tasks.test.output }}",
                },
            ],
        }
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(as_json, indent=2))
    assert load(path) == from_toml
    test, notes = from_toml.tasks
    assert (test.kind, test.retry, test.timeout_secs, test.env) == ("shell", 2, 600.0, {"CI": "1"})
    assert (notes.kind, notes.agent, notes.deps) == ("agent", "claude", ("test",))


def problems(source: str, name: str = "w.toml") -> str:
    with pytest.raises(InvalidInput) as caught:
        parse(source, name, inputs={}, installed=set())
    return str(caught.value)


def test_every_problem_is_reported_with_its_line() -> None:
    source = """\
[dag]
name = "bad"

[[dag.tasks]]
id = "a"
command = "true"
deps = ["nope"]

[[dag.tasks]]
id = "b"
command = "true"
retry = -1
colour = "red"

[[dag.tasks]]
id = "a"
command = "true"

[[dag.tasks]]
id = "c"
command = "true"
agent = "claude"
"""
    message = problems(source)
    assert "w.toml:7: task 'a': unknown dep 'nope'" in message
    assert "w.toml:12: task 'b': retry must be" in message
    assert "w.toml:13: task 'b': unknown field 'colour'" in message
    assert "task id 'a' is used twice (first at line 5)" in message
    assert "task 'c': give one of command, agent or skill, not several" in message


def test_cycles_and_foreign_outputs_are_refused() -> None:
    cycle = """\
[dag]
name = "loop"
[[dag.tasks]]
id = "a"
command = "true"
deps = ["c"]
[[dag.tasks]]
id = "b"
command = "true"
deps = ["a"]
[[dag.tasks]]
id = "c"
command = "echo {{ tasks.b.output }}"
deps = ["b"]
"""
    message = problems(cycle)
    assert message.startswith("workflow not valid; nothing ran")
    assert "w.toml:4: cycle: a -> c -> b -> a" in message
    foreign = """\
[dag]
name = "x"
[[dag.tasks]]
id = "a"
command = "true"
[[dag.tasks]]
id = "b"
command = "echo {{ tasks.a.output }}"
"""
    assert "w.toml:7: task 'b' uses the output of 'a', which is not among its deps" in problems(
        foreign
    )


def test_syntax_errors_and_unsupported_kinds() -> None:
    assert "not valid TOML" in problems("[dag\nname=1", "w.toml")
    assert "w.json:1: not valid JSON" in problems("{nope", "w.json")
    assert "not valid YAML" in problems("dag: [unclosed", "w.yaml")
    assert "use a .toml" in problems("x", "w.txt")
    skill = '[dag]\nname = "s"\n[[dag.tasks]]\nid = "s"\nskill = "count"\ninput = "words"\n'
    assert "w.toml:6: task 's': input must be a table" in problems(skill)


def test_outputs_are_quoted_into_shell_commands() -> None:
    import shlex

    hostile = "x'; rm -rf / #"
    line = render("echo {{ tasks.a.output }}", {"a": hostile}, {}, shlex.quote)
    assert shlex.split(line) == ["echo", hostile]
    assert render("hi {{ inputs.who }}", {}, {"who": "Kim"}) == "hi Kim"


@settings(max_examples=200)
@given(st.dictionaries(st.integers(0, 7), st.lists(st.integers(0, 7), max_size=3), max_size=8))
def test_cycle_finder_agrees_with_a_topological_sort(edges: dict[int, list[int]]) -> None:
    graph = {str(n): [str(d) for d in edges.get(n, []) if d in edges] for n in edges}
    found = _find_cycle(graph)
    remaining = {n: set(ds) for n, ds in graph.items()}
    while True:
        free = [n for n, ds in remaining.items() if not ds]
        if not free:
            break
        for n in free:
            del remaining[n]
        for ds in remaining.values():
            ds.difference_update(free)
    if not remaining:
        assert found is None
    else:
        assert found is not None
        for i, node in enumerate(found):  # each step of the cycle is an edge
            assert found[(i + 1) % len(found)] in graph[node]


def test_one_pass_reports_every_problem_and_no_false_one() -> None:
    found = problems(
        '[dag]\nname = "x"\n'
        '[[dag.tasks]]\nid = "a"\ncommand = "true"\nretry = -1\n'
        '[[dag.tasks]]\nid = "b"\ncommand = "echo {{ tasks.a.output }}"\ndeps = ["a", "z"]\n'
        '[[dag.tasks]]\nid = "c"\nskill = "nope"\n'
        '[[dag.tasks]]\nid = "d"\ncommand = "rm -rf build/{{ inputs.dir }}"\n',
    )
    for part in (
        "w.toml:6: task 'a': retry must be",
        "w.toml:10: task 'b': unknown dep 'z'",
        "w.toml:12: task 'c': no skill 'nope' is installed",
        "w.toml:15: task 'd' uses {{ inputs.dir }}, which is not given (--input dir=VALUE)",
    ):
        assert part in found, found
    assert "unknown dep 'a'" not in found  # a exists, though it has a bad field
    assert "output of 'a'" not in found


def test_a_yaml_alias_bomb_is_refused_at_once() -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 9):
        refs = ", ".join([f"*{chr(96 + level)}"] * 10)
        lines.append(f"{chr(97 + level)}: &{chr(97 + level)} [{refs}]")
    lines.append("dag: {name: bomb, tasks: [{id: t, command: true, input: *i}]}")
    source = "\n".join(lines)
    assert len(source) < 1100
    with pytest.raises(InvalidInput, match="aliases are expanded"):
        parse(source, "bomb.yaml")


def test_a_path_with_a_nul_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="is not a path"):
        load("/tmp/a\x00b.toml")
