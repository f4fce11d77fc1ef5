"""`cis token ...`: API tokens for the HTTP and MCP shells."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .state import State

token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


@token_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the token (unique).")],
    scope: Annotated[
        str | None, typer.Option("--scope", help="Limit the token to this scope.")
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Allow reads only.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a token; its secret is printed once, alone on the last line."""
    state: State = ctx.obj
    with state.open() as node:
        token, secret = node.tokens.create(name, scope=scope, read_only=read_only)
    if as_json:
        output.emit_json({"token": token, "secret": secret})
        return
    print(f"token {token.name} ({output.token_limits(token)}); the secret below is shown only now:")
    print(secret)


@token_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List tokens (names and limits; secrets are not stored)."""
    state: State = ctx.obj
    with state.open() as node:
        tokens = node.tokens.list()
    output.emit_lines(tokens, as_json, output.token_line)


@token_app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token at once (exit 3 if there is none by that name)."""
    state: State = ctx.obj
    with state.open() as node:
        node.tokens.revoke(name)
    output.emit_json({"revoked": name}) if as_json else print(f"revoked {name}")
