"""The `cis` root command: global options, `init`, `status`, and error handling."""

from __future__ import annotations

import os
import sys

if "search" in sys.argv[1:5]:  # load the model while the rest of the CLI imports
    from ..index.embed import preload_minilm

    preload_minilm()

from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from ..errors import CISError, StorageError
from ..store.crypto import SALT_FILE
from . import output
from .dag import dag_app
from .memory import memory_app
from .network import network_app
from .node import node_app
from .pair import pair_app
from .peer import peer_app, sync
from .serve import mcp, serve
from .skill import skill_app
from .state import State
from .token import token_app

app = typer.Typer(
    name="cis",
    help="CIS: local-first, encrypted memory for LLM agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(memory_app, name="memory")
app.add_typer(token_app, name="token")
app.add_typer(node_app, name="node")
app.add_typer(peer_app, name="peer")
app.add_typer(network_app, name="network")
app.add_typer(pair_app, name="pair")
app.add_typer(dag_app, name="dag")
app.add_typer(skill_app, name="skill")
app.command()(serve)
app.command()(mcp)
app.command()(sync)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _version(shown: bool) -> None:
    if shown:
        print(f"cis {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="CIS_DATA_DIR", help="Node data directory [~/.cis]."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    ctx.obj = State(data_dir)


@app.command()
def init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create the node: data directory, encryption key and database (idempotent)."""
    state: State = ctx.obj
    with state.open(create=True) as node:
        result = {"data_dir": str(node.data_dir), "db_path": str(node.db.path)}
    if as_json:
        output.emit_json(result)
    else:
        print(f"node ready in {result['data_dir']}")
        if (node.data_dir / SALT_FILE).exists():
            print(
                "keep your passphrase, and back up db.salt beside the database: without both"
                " the data is lost"
            )
        else:
            print("back up the key file (db.key) beside the database: without it the data is lost")


@app.command()
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Counts, index state, model, database size and cache statistics."""
    state: State = ctx.obj
    with state.open() as node:
        info = node.status()
    if as_json:
        output.emit_json(info)
        return
    cache = info.cache
    print(f"data dir      {info.data_dir}")
    print(
        f"database      {info.db_path} ({info.db_bytes / 1e6:.1f} MB, {info.cipher}, "
        f"schema {info.schema_version})"
    )
    print(f"memories      {info.memories}")
    print(
        f"vectors       {info.vectors} ({info.index} index, model {info.model}); "
        f"{info.pending_embeddings} waiting"
    )
    print(f"cache         {cache.size}/{cache.capacity} entries, hit ratio {cache.hit_ratio:.2f}")


def main() -> None:
    """Entry point: runs the app, turns CIS errors into messages and exit codes.

    Every command closes its node before returning, so the process then ends at once
    (os._exit) instead of spending ~0.2 s tearing down the model runtime.
    """
    code = 0
    as_json = "--json" in sys.argv
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int):  # click hands back typer.Exit's code without standalone
            code = result
    except CISError as exc:
        output.error(exc, as_json)
        code = exc.exit_code
    except OSError as exc:  # a file the command was given or writes cannot be used
        where = f"{exc.filename}: " if exc.filename else ""
        failure = StorageError(f"{where}{exc.strerror or exc}")
        output.error(failure, as_json)
        code = failure.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        code = 130
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"error: {exc}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)
    except Exception as exc:  # a bug: one line for the user, the traceback on request
        if os.environ.get("CIS_DEBUG"):
            raise
        output.error(
            CISError(f"internal error ({type(exc).__name__}: {exc}); CIS_DEBUG=1 shows where"),
            as_json,
        )
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
