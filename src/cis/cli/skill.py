"""`cis skill ...`: install, inspect, run and route to skills."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from ..errors import InvalidInput
from ..skills.registry import MIN_MATCH
from . import output
from .state import State

skill_app = typer.Typer(help="Install and run skills (WASM, sandboxed).", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
NameArg = Annotated[str, typer.Argument(help="The skill's name (`cis skill list`).")]
InputOpt = Annotated[str, typer.Option("--input", help="The input, as JSON ('-' reads stdin).")]


def _payload(raw: str) -> Any:
    text = sys.stdin.read() if raw == "-" else raw
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"--input is not valid JSON ({exc})") from exc


def _line(manifest: Any) -> str:
    info = manifest.skill
    return f"{info.name:<20} {info.version:<8} {info.type:<6} {info.description}"


@skill_app.command("install")
def install(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A skill directory, or a .tar.gz of one.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Install even if it is granted a path that holds the data dir."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Install a skill (or upgrade the one of the same name)."""
    state: State = ctx.obj
    with state.open() as node:
        manifest = node.skills.install(source, force=force)
    output.emit_json(manifest) if as_json else print(f"installed {manifest.skill.name}")


@skill_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Installed skills."""
    state: State = ctx.obj
    with state.open() as node:
        skills = node.skills.installed()
    output.emit_lines(skills, as_json, _line)


@skill_app.command("info")
def info(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """A skill's manifest: what it may touch and its limits."""
    state: State = ctx.obj
    with state.open() as node:
        manifest = node.skills.get(name)
    if as_json:
        output.emit_json(manifest)
        return
    print(_line(manifest))
    print(f"  permissions: {msgspec.json.encode(manifest.permissions).decode()}")
    print(f"  limits:      {msgspec.json.encode(manifest.limits).decode()}")


@skill_app.command("remove")
def remove(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """Remove an installed skill."""
    state: State = ctx.obj
    with state.open() as node:
        node.skills.remove(name)
    output.emit_json({"removed": name}) if as_json else print(f"removed {name}")


@skill_app.command("run")
def run(ctx: typer.Context, name: NameArg, raw: InputOpt = "{}", as_json: JsonOpt = False) -> None:
    """Run a skill on a JSON input; prints its JSON output (its log goes to stderr)."""
    state: State = ctx.obj
    with state.open() as node:
        call = node.skills.run(name, _payload(raw))
    if call.log:
        sys.stderr.write(call.log)
    if as_json:
        output.emit_json(call)
    else:
        output.emit_json(call.output)


@skill_app.command("do")
def do(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    raw: InputOpt = "{}",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Run without asking.")] = False,
) -> None:
    """Pick the skill whose description best matches REQUEST, and run it (asks first)."""
    state: State = ctx.obj
    with state.open() as node:
        ranked = node.skills.route(request)
        if not ranked:
            raise InvalidInput("no installed skill has a description to match; install one")
        score, best = ranked[0]
        if score < MIN_MATCH:
            raise InvalidInput(
                f"no installed skill fits {request!r} (the closest, {best.skill.name}, matches"
                f" {score:.2f}; {MIN_MATCH} is needed); run one by name: cis skill run NAME"
            )
        print(f"best match: {best.skill.name} ({score:.2f}): {best.skill.description}")
        for other_score, other in ranked[1:3]:
            print(f"  then: {other.skill.name} ({other_score:.2f})")
        if not yes and not typer.confirm(f"run {best.skill.name}?", default=True):
            raise typer.Abort()
        call = node.skills.run(best.skill.name, _payload(raw))
    if call.log:
        sys.stderr.write(call.log)
    output.emit_json(call.output)
