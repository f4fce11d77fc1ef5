"""DAG workflow files (TOML, YAML or JSON): parsed, checked whole before anything runs.

```toml
[dag]
name = "release"
policy = "all_success"          # or allow_failures: the run succeeds despite failed tasks
[[dag.tasks]]
id = "test"
command = "pytest -q"           # or: agent = "claude", prompt = "..."; or none: a barrier
deps = []
retry = 2                       # extra attempts, with exponential backoff and jitter
timeout_secs = 600
env = { CI = "1" }
```

Every problem is reported at once, each with the line it stands on.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from ..errors import InvalidInput

Policy = Literal["all_success", "allow_failures"]
KINDS = ("shell", "agent", "skill", "barrier")
MAX_RETRY = 10
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TEMPLATE = re.compile(r"\{\{\s*(tasks\.([A-Za-z0-9_.-]+)\.output|inputs\.([A-Za-z0-9_]+))\s*\}\}")
_TASK_FIELDS = {
    "id",
    "command",
    "agent",
    "prompt",
    "skill",
    "input",
    "deps",
    "retry",
    "retry_delay_secs",
    "timeout_secs",
    "env",
    "cwd",
}


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    command: str | list[str] | None = None
    agent: str | None = None
    prompt: str | None = None
    skill: str | None = None
    input: dict[str, Any] = {}
    deps: tuple[str, ...] = ()
    retry: int = 0
    retry_delay_secs: float = 1.0
    timeout_secs: float | None = None
    env: dict[str, str] = {}
    cwd: str | None = None


class DagSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    policy: Policy = "all_success"
    tasks: tuple[TaskSpec, ...] = ()


def templates(text: str) -> list[tuple[str | None, str | None]]:
    """(task id, input name) of each `{{ tasks.X.output }}` / `{{ inputs.Y }}` in text."""
    return [(m.group(2), m.group(3)) for m in _TEMPLATE.finditer(text)]


def render(text: str, outputs: dict[str, str], inputs: dict[str, str], quote: Any = None) -> str:
    """`text` with its templates filled; `quote` (e.g. shlex.quote) wraps each value."""

    def fill(match: re.Match[str]) -> str:
        task, name = match.group(2), match.group(3)
        value = outputs.get(task, "") if task is not None else inputs.get(name or "", "")
        return quote(value) if quote is not None else value

    return _TEMPLATE.sub(fill, text)


class _Lines:
    """Finds the line a task or field stands on in the source text (1-based)."""

    _ID_LINE = re.compile(r"""\bid["']?\s*[:=]\s*["']?([^"',\s]+)["']?\s*,?\s*$""")

    def __init__(self, source: str):
        self.lines = source.splitlines()
        self.ids: dict[str, int] = {}
        self.id_lines: list[int] = []
        for number, line in enumerate(self.lines, 1):
            found = self._ID_LINE.search(line) if len(line) < 1000 else None
            if found:
                self.ids.setdefault(found.group(1), number)
                self.id_lines.append(number)

    def of_task(self, task_id: object, index: int) -> int:
        """The line of `id = <task_id>` (or of the index-th id line; 1 if unknown)."""
        line = self.ids.get(str(task_id))
        if line is not None:
            return line
        return self.id_lines[index] if index < len(self.id_lines) else 1

    def of_field(self, start: int, field: str) -> int:
        pattern = re.compile(rf"""(^|[\s{{,"']){re.escape(field)}["']?\s*[:=]""")
        for number in range(max(1, start - 3), len(self.lines) + 1):
            if pattern.search(self.lines[number - 1]):
                return number
        return start


def load(
    path: str | Path,
    *,
    inputs: dict[str, str] | None = None,
    installed: set[str] | None = None,
) -> DagSpec:
    """Read and check a workflow file; InvalidInput lists every problem with its line
    (with `inputs` and `installed`, also each input used but not given and each skill
    that is not installed)."""
    path = Path(path)
    try:
        source = path.read_bytes().decode("utf-8")
    except ValueError as exc:  # a NUL in the path, or bytes that are not UTF-8
        if isinstance(exc, UnicodeDecodeError):
            raise InvalidInput(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
        raise InvalidInput(f"workflow path {str(path)!r} is not a path ({exc})") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    return parse(source, path.name, inputs=inputs, installed=installed)


def parse(
    source: str,
    name: str,
    *,
    inputs: dict[str, str] | None = None,
    installed: set[str] | None = None,
) -> DagSpec:
    """A workflow checked whole: every problem of the file is reported in one pass."""
    kind = Path(name).suffix.lower()
    data = _decode(source, name, kind)
    root = data.get("dag", data) if isinstance(data, dict) else None
    if not isinstance(root, dict):
        raise InvalidInput(f"{name}: expected a [dag] table with name and tasks")
    lines = _Lines(source)
    errors: list[str] = []

    def err(line: int, message: str) -> None:
        errors.append(f"{name}:{line}: {message}")

    dag_name = root.get("name")
    if not isinstance(dag_name, str) or not _ID.fullmatch(dag_name):
        err(lines.of_field(1, "name"), "dag needs a name: letters, digits, '.', '_', '-'")
    policy = root.get("policy", "all_success")
    if policy not in ("all_success", "allow_failures"):
        err(lines.of_field(1, "policy"), f"policy {policy!r}: use all_success or allow_failures")
    unknown = set(root) - {"name", "policy", "tasks", "description"}
    if unknown:
        err(1, f"unknown dag field(s): {', '.join(sorted(unknown))}")
    raw_tasks = root.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        err(lines.of_field(1, "tasks"), "dag needs a list of tasks")
        raw_tasks = []
    tasks: list[TaskSpec] = []
    where: dict[str, int] = {}  # every task with a well-formed id, valid or not
    for index, raw in enumerate(raw_tasks):
        if not isinstance(raw, dict):
            err(1, f"task {index + 1}: expected a table of fields")
            continue
        line = lines.of_task(raw.get("id"), index)
        task_id = raw.get("id")
        if isinstance(task_id, str) and task_id in where:
            err(line, f"task id {task_id!r} is used twice (first at line {where[task_id]})")
            continue
        if isinstance(task_id, str) and _ID.fullmatch(task_id):
            where[task_id] = line
        task = _task(raw, line, lines, err)
        if task is not None:
            tasks.append(task)
    _check_graph(tasks, where, lines, err)
    for task in tasks:
        _check_use(task, where[task.id], inputs, installed, err)
    if errors:
        raise InvalidInput("workflow not valid; nothing ran:\n" + "\n".join(errors))
    return DagSpec(name=str(dag_name), policy=policy, tasks=tuple(tasks))


def _texts(task: TaskSpec) -> list[str]:
    """Every text of a task where templates may stand."""
    command = task.command
    texts = [task.prompt or "", *_strings(task.input)]
    return texts + (command if isinstance(command, list) else [command or ""])


def _check_use(
    task: TaskSpec,
    line: int,
    inputs: dict[str, str] | None,
    installed: set[str] | None,
    err: Any,
) -> None:
    """Inputs a task uses that are not given; a skill that is not installed."""
    if inputs is not None:
        used = {n for text in _texts(task) for _, n in templates(text) if n is not None}
        for missing in sorted(used - set(inputs)):
            err(
                line,
                f"task {task.id!r} uses {{{{ inputs.{missing} }}}}, which is not given"
                f" (--input {missing}=VALUE)",
            )
    if installed is not None and task.kind == "skill" and task.skill not in installed:
        err(line, f"task {task.id!r}: no skill {task.skill!r} is installed (`cis skill list`)")


MAX_YAML_NODES = 100_000  # a workflow's YAML nodes once its aliases are expanded


def _yaml(source: str) -> Any:
    """YAML, refused when its aliases expand past MAX_YAML_NODES (an alias bomb of 1 KB
    stands for billions of values)."""
    import yaml

    node = yaml.compose(source, Loader=yaml.SafeLoader)
    if node is None:
        return None
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(node, False)]
    while stack:  # each node's expanded size, each distinct node counted once
        item, done = stack.pop()
        if id(item) in sizes:
            continue
        children = (
            [c for pair in item.value for c in (pair if isinstance(pair, tuple) else (pair,))]
            if isinstance(item.value, list)
            else []
        )
        if done:
            sizes[id(item)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(item)] > MAX_YAML_NODES:
                raise InvalidInput(
                    f"YAML holds more than {MAX_YAML_NODES} values once its aliases are"
                    " expanded (an alias bomb?)"
                )
            continue
        stack.append((item, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return yaml.SafeLoader(source).get_single_data()


def _decode(source: str, name: str, kind: str) -> Any:
    try:
        if kind == ".toml":
            return tomllib.loads(source)
        if kind in (".yaml", ".yml"):
            return _yaml(source)
        if kind == ".json":
            return json.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{name}: not valid TOML: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{name}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInput(f"{name}: nested too deeply") from exc
    except Exception as exc:  # yaml.YAMLError carries its own line in its text
        raise InvalidInput(f"{name}: not valid YAML: {exc}") from exc
    raise InvalidInput(f"{name}: use a .toml, .yaml, .yml or .json file")


def _task(raw: dict[str, Any], line: int, lines: _Lines, err: Any) -> TaskSpec | None:
    ok = True

    def bad(field: str, message: str) -> None:
        nonlocal ok
        ok = False
        err(lines.of_field(line, field), message)

    task_id = raw.get("id")
    if not isinstance(task_id, str) or not _ID.fullmatch(task_id):
        bad("id", f"task id {task_id!r}: 1-64 letters, digits, '.', '_', '-'")
        return None
    unknown = set(raw) - _TASK_FIELDS
    for field in sorted(unknown):
        bad(field, f"task {task_id!r}: unknown field {field!r}")
    given = [k for k in ("command", "agent", "skill") if raw.get(k) is not None]
    if len(given) > 1:
        bad("id", f"task {task_id!r}: give one of command, agent or skill, not several")
        return None
    # with none of them, a task is a barrier: it succeeds as soon as its deps have
    kind = (
        {"command": "shell", "agent": "agent", "skill": "skill"}[given[0]] if given else "barrier"
    )
    command = raw.get("command")
    if kind == "shell" and not (
        (isinstance(command, str) and command.strip())
        or (isinstance(command, list) and command and all(isinstance(a, str) for a in command))
    ):
        bad("command", f"task {task_id!r}: command must be a string or a list of strings")
    if kind == "agent":
        if not isinstance(raw.get("agent"), str) or not raw["agent"].strip():
            bad("agent", f"task {task_id!r}: agent must name a command (claude, kimi, ...)")
        if not isinstance(raw.get("prompt"), str) or not raw["prompt"].strip():
            bad("prompt", f"task {task_id!r}: an agent task needs a prompt")
    if kind == "skill":
        if not isinstance(raw.get("skill"), str) or not raw["skill"].strip():
            bad("skill", f"task {task_id!r}: skill must name an installed skill")
        if not isinstance(raw.get("input", {}), dict):
            bad("input", f"task {task_id!r}: input must be a table (the skill's JSON input)")
    deps = raw.get("deps", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        bad("deps", f"task {task_id!r}: deps must be a list of task ids")
        deps = []
    retry = raw.get("retry", 0)
    if isinstance(retry, bool) or not isinstance(retry, int) or not 0 <= retry <= MAX_RETRY:
        bad("retry", f"task {task_id!r}: retry must be a whole number from 0 to {MAX_RETRY}")
    for field in ("timeout_secs", "retry_delay_secs"):
        value = raw.get(field)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            bad(field, f"task {task_id!r}: {field} must be a positive number of seconds")
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float) for k, v in env.items()
    ):
        bad("env", f"task {task_id!r}: env must map names to strings")
        env = {}
    if raw.get("cwd") is not None and not isinstance(raw["cwd"], str):
        bad("cwd", f"task {task_id!r}: cwd must be a path")
    if not ok:
        return None
    return TaskSpec(
        id=task_id,
        kind=kind,
        command=command,
        agent=raw.get("agent"),
        prompt=raw.get("prompt"),
        skill=raw.get("skill"),
        input=raw.get("input", {}),
        deps=tuple(dict.fromkeys(deps)),
        retry=int(retry),
        retry_delay_secs=float(raw.get("retry_delay_secs", 1.0)),
        timeout_secs=None if raw.get("timeout_secs") is None else float(raw["timeout_secs"]),
        env={str(k): str(v) for k, v in env.items()},
        cwd=raw.get("cwd"),
    )


def _check_graph(tasks: list[TaskSpec], where: dict[str, int], lines: _Lines, err: Any) -> None:
    """Deps that name no task, cycles, and outputs used from tasks not upstream. `where`
    holds every task id of the file, so a task with a bad field is still known."""
    ids = set(where)
    for task in tasks:
        for dep in task.deps:
            if dep not in ids:
                err(
                    lines.of_field(where[task.id], "deps"), f"task {task.id!r}: unknown dep {dep!r}"
                )
            elif dep == task.id:
                err(lines.of_field(where[task.id], "deps"), f"task {task.id!r} depends on itself")
    by_id = {t.id: t for t in tasks}
    cycle = _find_cycle({t.id: [d for d in t.deps if d in by_id and d != t.id] for t in tasks})
    if cycle:
        err(where[cycle[0]], "cycle: " + " -> ".join([*cycle, cycle[0]]))
        return
    for task in tasks:
        refs = [ref for text in _texts(task) for ref, _ in templates(text) if ref is not None]
        upstream = _upstream(by_id, task.id) if refs else set()
        for ref in refs:
            if ref not in upstream:
                err(
                    where[task.id],
                    f"task {task.id!r} uses the output of {ref!r}, which is not among its deps",
                )


def _strings(value: Any) -> list[str]:
    """Every string inside a JSON value (where templates may stand)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def render_value(value: Any, outputs: dict[str, str], inputs: dict[str, str]) -> Any:
    """A JSON value with the templates in its strings filled."""
    if isinstance(value, str):
        return render(value, outputs, inputs)
    if isinstance(value, dict):
        return {k: render_value(v, outputs, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, outputs, inputs) for v in value]
    return value


def _upstream(by_id: dict[str, TaskSpec], task_id: str) -> set[str]:
    """Every task upstream of one (a dep that is itself invalid counts, unexplored)."""
    seen: set[str] = set()
    stack = list(by_id[task_id].deps)
    while stack:
        dep = stack.pop()
        if dep not in seen:
            seen.add(dep)
            stack.extend(by_id[dep].deps if dep in by_id else ())
    return seen


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle of the graph as a list of ids, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    for start in graph:
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            deps = graph[node]
            if i < len(deps):
                stack.append((node, i + 1))
                nxt = deps[i]
                if state.get(nxt) == 1:
                    return path[path.index(nxt) :]
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None
