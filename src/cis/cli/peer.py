"""`cis peer ...` and `cis sync`: the nodes this one syncs public memory with."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import NetworkError
from ..net.peers import Peer
from . import output
from .state import State

peer_app = typer.Typer(help="The peers this node syncs public memory with.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
Did = Annotated[str, typer.Argument(help="The peer's DID (`cis node id` on it).")]


def _line(peer: Peer) -> str:
    seen = output.when(peer.last_seen) if peer.last_seen else "never"
    error = f"  last error: {peer.last_error}" if peer.last_error else ""
    return f"{peer.did}  {peer.address}  last synced {seen}{error}"


@peer_app.command("add")
def add(
    ctx: typer.Context,
    did: Did,
    address: Annotated[str, typer.Argument(help="HOST:PORT of its sync listener (7677).")],
    as_json: JsonOpt = False,
) -> None:
    """Allow a node and sync with it (`cis serve` connects to it, and lets it connect)."""
    state: State = ctx.obj
    with state.open() as node:
        peer = node.peers.add(did, address)
    if as_json:
        output.emit_json(peer)
    else:
        print(f"peer {peer.did} at {peer.address}")


@peer_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every peer, with when it last synced and its last error."""
    state: State = ctx.obj
    with state.open() as node:
        peers = node.peers.list()
    output.emit_lines(peers, as_json, _line)


@peer_app.command("nearby")
def nearby(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Nodes heard on the local network (mDNS, while `cis serve` runs): hints only. One
    you allow (`cis network allow DID`) becomes a peer when next heard; pairing needs
    no hint."""
    state: State = ctx.obj
    with state.open() as node:
        heard = node.peers.nearby()
        discovery = node.config.discovery
    if not heard and not as_json:
        print("no node heard yet" if discovery else "discovery is off (discovery = false)")
        return
    output.emit_lines(
        heard,
        as_json,
        lambda n: (
            f"{n.did}  {n.address}  heard {output.when(n.heard_at)}"
            + ("  (a peer)" if n.peer else "")
        ),
    )


@peer_app.command("remove")
def remove(ctx: typer.Context, did: Did, as_json: JsonOpt = False) -> None:
    """Stop syncing with a node; a session with it ends at once."""
    state: State = ctx.obj
    with state.open() as node:
        peer = node.peers.remove(did)
    if as_json:
        output.emit_json(peer)
    else:
        print(f"removed {peer.did}")


def sync(
    ctx: typer.Context,
    peer: Annotated[str | None, typer.Option("--peer", help="Only this peer's DID.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sync public memory with the peers now, and report what moved (exit 13 if none
    could be reached)."""
    state: State = ctx.obj
    with state.open() as node:
        reports = node.sync.now(peer)
    if as_json:
        output.emit_json(reports)
    else:
        for r in reports:
            held = f", {r.held} held in quarantine" if r.held else ""
            status = r.error or (
                f"sent {r.sent} ops, received {r.received}, {r.changed} changed{held}"
            )
            print(f"{r.peer}: {status}")
            for origin, why in r.refused.items():
                print(f"  refused ops of {origin}: {why}")
    if reports and all(r.error for r in reports):
        if as_json:  # the reports said why; stdout stays one JSON document
            raise typer.Exit(NetworkError.exit_code)
        raise NetworkError("no peer could be synced with")
