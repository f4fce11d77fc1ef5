"""`cis pair ...`: make two of your devices peers with a one-time code."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from ..clock import now_ms
from ..memory import validate as check
from . import output
from .state import State

pair_app = typer.Typer(help="Pair two devices with a one-time code.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


@pair_app.command("code")
def code(
    ctx: typer.Context,
    ttl: Annotated[str, typer.Option("--ttl", help="How long it stays valid (10m, 1h).")] = "10m",
    as_json: JsonOpt = False,
) -> None:
    """A one-time code for another device to join this one (`cis serve` must run here);
    a wrong code tried against it voids every open code."""
    state: State = ctx.obj
    with state.open() as node:
        expires = check.ahead(ttl, "--ttl")
        assert expires is not None
        made, until = node.peers.new_code(expires - now_ms())
        did, port = node.identity.did, node.config.sync_port
    address = f"{socket.gethostname()}:{port}"
    if as_json:
        output.emit_json({"code": made, "did": did, "address": address, "expires_at": until})
        return
    print(f"code {made} (valid until {output.when(until)} UTC, once)")
    print(f"this node: {did}")
    print(f"on the other device: cis pair join {made} {address}")


@pair_app.command("join")
def join(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="The code `cis pair code` showed there.")],
    address: Annotated[str, typer.Argument(help="HOST:PORT of that node's sync listener.")],
    mine: Annotated[
        str | None,
        typer.Option("--address", help="HOST:PORT where this node's sync listens [host:7677]."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pair with the node that showed CODE: both prove their keys and the code, then each
    is the other's peer, and `cis serve` on both syncs."""
    state: State = ctx.obj
    with state.open() as node:
        here = mine or f"{socket.gethostname()}:{node.config.sync_port}"
        peer = node.sync.pair(code, address, here)
    if as_json:
        output.emit_json(peer)
    else:
        print(f"paired with {peer.did} at {peer.address}")
