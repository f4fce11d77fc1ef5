"""`cis node ...`: this node's identity."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .state import State

node_app = typer.Typer(help="This node's identity.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


@node_app.command("id")
def node_id(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """This node's DID (did:key:z6Mk...), made by `cis init`; peers know it by it."""
    state: State = ctx.obj
    with state.open() as node:
        info = node.info()
    if as_json:
        output.emit_json(info)
    else:
        print(info.did)
