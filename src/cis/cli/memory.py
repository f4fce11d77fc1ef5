"""`cis memory ...`: add, set, search, get, list, update, delete, history, import, export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer

from ..errors import InvalidInput
from ..model import Filter, Listing, Search
from ..shapes import convert
from . import output
from .state import State

memory_app = typer.Typer(help="Store, find and manage memories.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
ScopeOpt = Annotated[str, typer.Option("--scope", help="global, project/N, agent/N, session/N.")]
FilterScope = Annotated[str | None, typer.Option("--scope", help="Only this scope.")]
DomainOpt = Annotated[str | None, typer.Option("--domain", help="private or public.")]
CategoryOpt = Annotated[str | None, typer.Option("--category", help="Memory category.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")]
MetaOpt = Annotated[str | None, typer.Option("--metadata", help="A JSON object.")]
EventOpt = Annotated[str | None, typer.Option("--event-at", help="ISO-8601 time or epoch ms.")]
ThreadOpt = Annotated[
    str | None,
    typer.Option("--thread", help="Name shared by memories that explain each other."),
]
WHEN_HELP = "ISO-8601 time, a date (2026-12-01, UTC), a time ago (90m, 7d) or epoch ms"
SinceOpt = Annotated[str | None, typer.Option("--since", help=f"From this time on: {WHEN_HELP}.")]
UntilOpt = Annotated[str | None, typer.Option("--until", help=f"Before this time: {WHEN_HELP}.")]
IdOrKey = Annotated[str, typer.Argument(help="A memory id, or a key.")]
FLUSH_BUDGET_S = 5.0
S = TypeVar("S", bound=Filter)


def _metadata(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"--metadata is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidInput("--metadata must be a JSON object")
    return value


def _text(value: str) -> str:
    """The argument, or standard input when it is '-'."""
    return sys.stdin.read() if value == "-" else value


def _show(memory: Any, as_json: bool) -> None:
    if as_json:
        output.emit_json(memory)
    else:
        print(output.memory_detail(memory))


@memory_app.command("add")
def add(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The text to remember ('-' reads stdin).")],
    key: Annotated[
        str | None, typer.Option("--key", help="Optional key, unique per scope.")
    ] = None,
    scope: ScopeOpt = "global",
    domain: Annotated[str, typer.Option("--domain")] = "private",
    category: Annotated[str, typer.Option("--category")] = "context",
    tag: TagOpt = None,
    metadata: MetaOpt = None,
    event_at: EventOpt = None,
    thread: ThreadOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a memory (a new id every time)."""
    state: State = ctx.obj
    with state.open() as node:
        memory = node.memory.add(
            _text(text),
            key=key,
            scope=scope,
            domain=domain,
            category=category,
            tags=tag or (),
            metadata=_metadata(metadata),
            event_at=event_at,
            thread=thread,
        )
    output.emit_json(memory) if as_json else print(memory.id)


@memory_app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key (unique within the scope).")],
    value: Annotated[str, typer.Argument(help="The text ('-' reads stdin).")],
    scope: ScopeOpt = "global",
    domain: Annotated[str | None, typer.Option("--domain")] = None,
    category: Annotated[str | None, typer.Option("--category")] = None,
    tag: TagOpt = None,
    metadata: MetaOpt = None,
    event_at: EventOpt = None,
    thread: ThreadOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the memory under KEY: replace its text, or add it."""
    state: State = ctx.obj
    fields: dict[str, Any] = {"scope": scope}
    for name, given in (
        ("domain", domain),
        ("category", category),
        ("tags", tag),
        ("metadata", _metadata(metadata)),
        ("event_at", event_at),
        ("thread", thread),
    ):
        if given is not None:
            fields[name] = given
    with state.open() as node:
        memory = node.memory.set(key, _text(value), **fields)
    output.emit_json(memory) if as_json else print(memory.id)


def _asked(kind: type[S], options: dict[str, Any]) -> S:
    """A command's options (its locals) as one of the API's structures: the fields of
    `kind` that were given (None: not given; `--tag` fills `tags`)."""
    given = {"tags" if name == "tag" else name: value for name, value in options.items()}
    fields = kind.__struct_fields__
    chosen = {k: v for k, v in given.items() if k in fields and v is not None}
    return convert(chosen, kind, "the command")


@memory_app.command("search")
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What to look for, in your own words.")],
    limit: Annotated[int, typer.Option("--limit", "-n")] = 10,
    scope: FilterScope = None,
    domain: DomainOpt = None,
    category: CategoryOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, vector or text.")] = "hybrid",
    as_json: JsonOpt = False,
) -> None:
    """Find memories by meaning and by words."""
    asked = _asked(Search, locals())
    state: State = ctx.obj
    with state.open() as node:
        # embedding what is pending writes; with nothing pending the search only reads
        waiting = mode != "text" and node.memory.pending() > 0
        if waiting and not node.memory.flush(FLUSH_BUDGET_S):
            left = node.memory.pending()
            print(
                f"note: {left} memories are still being embedded; meaning search may miss "
                "them (words find them)",
                file=sys.stderr,
            )
        hits = node.access().search(asked)
    if as_json:
        output.emit_json(hits)
        return
    if not hits:
        print("no match")
    for rank, hit in enumerate(hits, 1):
        print(output.hit_line(rank, hit))


@memory_app.command("get")
def get(
    ctx: typer.Context,
    id_or_key: IdOrKey,
    scope: ScopeOpt = "global",
    as_json: JsonOpt = False,
) -> None:
    """Show one memory by id or key (exit 3 if there is none)."""
    state: State = ctx.obj
    with state.open() as node:
        memory = node.access().get(id_or_key, scope=scope)
    _show(memory, as_json)


@memory_app.command("list")
def list_(
    ctx: typer.Context,
    scope: FilterScope = None,
    domain: DomainOpt = None,
    category: CategoryOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Keys starting with this.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 100,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", "--after", help="Continue after this id (a page's next_cursor)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List memories in the order they were added, a page at a time."""
    asked = _asked(Listing, locals())
    state: State = ctx.obj
    with state.open() as node:
        page = node.access().list(asked)
    if as_json:
        output.emit_json(page)
        return
    output.emit_lines(page.items, False, output.memory_line)
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)


@memory_app.command("update")
def update(
    ctx: typer.Context,
    id_or_key: IdOrKey,
    text: Annotated[str | None, typer.Argument(help="New text ('-' reads stdin).")] = None,
    tag: TagOpt = None,
    metadata: MetaOpt = None,
    scope: ScopeOpt = "global",
    as_json: JsonOpt = False,
) -> None:
    """Change a memory's text, tags or metadata."""
    state: State = ctx.obj
    with state.open() as node:
        memory = node.memory.update(
            id_or_key,
            None if text is None else _text(text),
            tags=tag,
            metadata=_metadata(metadata),
            scope=scope,
        )
    _show(memory, as_json)


@memory_app.command("delete")
def delete(
    ctx: typer.Context,
    id_or_key: IdOrKey,
    scope: ScopeOpt = "global",
    as_json: JsonOpt = False,
) -> None:
    """Delete a memory (its history is kept)."""
    state: State = ctx.obj
    with state.open() as node:
        memory = node.memory.delete(id_or_key, scope=scope)
    output.emit_json(memory) if as_json else print(f"deleted {memory.id}")


@memory_app.command("history")
def history(
    ctx: typer.Context,
    id_or_key: IdOrKey,
    scope: ScopeOpt = "global",
    as_json: JsonOpt = False,
) -> None:
    """Every version of a memory, oldest first, with what each one changed."""
    state: State = ctx.obj
    with state.open() as node:
        entries = node.access().history(id_or_key, scope=scope)
    if as_json:
        output.emit_json(entries)
        return
    before = None
    for entry in entries:
        print(output.history_line(entry, before))
        before = entry


@memory_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .jsonl file (or .json list) of memories.")],
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing", help="Leave out memories stored already (importing twice adds once)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import memories: every record, or none if any is bad (every bad line is named)."""
    state: State = ctx.obj
    with state.open() as node:
        done = node.memory.import_file(file, skip_existing=skip_existing)
    if as_json:
        output.emit_json({"imported": len(done.added), "skipped": done.skipped})
        return
    skipped = f", skipped {done.skipped} stored already" if done.skipped else ""
    print(f"imported {len(done.added)} memories{skipped} (embedding continues in the background)")


@memory_app.command("export")
def export(
    ctx: typer.Context,
    scope: FilterScope = None,
    domain: DomainOpt = None,
    category: CategoryOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    out: Annotated[Path | None, typer.Option("-o", "--output", help="File [stdout].")] = None,
) -> None:
    """Export memories as JSON Lines (import reads them back exactly)."""
    asked = _asked(Filter, locals())
    if out is not None and not out.parent.is_dir():
        raise InvalidInput(f"--output {out}: there is no folder {out.parent}; create it first")
    state: State = ctx.obj
    with state.open() as node:
        lines = node.access().export(asked)
        if out is None:
            for line in lines:
                sys.stdout.buffer.write(line)
            return
        tmp = out.with_name(out.name + ".part")
        count = 0
        try:
            with open(tmp, "wb") as fh:
                for line in lines:
                    fh.write(line)
                    count += 1
            tmp.replace(out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        print(f"exported {count} memories to {out}", file=sys.stderr)


@memory_app.command("reindex")
def reindex(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Re-embed even current vectors.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed memories (after a model change, or all with --force), with progress."""
    from rich.progress import Progress

    state: State = ctx.obj
    with state.open() as node:
        queued = node.memory.reindex(force=force) or node.memory.pending()
        with Progress(disable=as_json, transient=True) as bar:
            task = bar.add_task("embedding", total=queued)
            while not node.memory.flush(timeout=0.25):
                bar.update(task, completed=queued - node.memory.pending())
            bar.update(task, completed=queued)
    if as_json:
        output.emit_json({"embedded": queued})
    else:
        print(f"embedded {queued} memories")
