"""`cis network ...`: who may sync with this node (mode, allow and deny), and the audit."""

from __future__ import annotations

from typing import Annotated

import typer

from ..memory import validate as check
from ..memory.quarantine import HeldBatch
from ..net.network import MODES, AclEntry, chosen
from . import output
from .state import State

network_app = typer.Typer(
    help="Who may sync with this node, and what sync did.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
Did = Annotated[str, typer.Argument(help="The node's DID.")]
Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the list and the audit).")]
Expires = Annotated[
    str | None, typer.Option("--expires", help="Until when: a span (30d, 12h) or a time.")
]


def _line(entry: AclEntry) -> str:
    until = f" until {output.when(entry.expires_at)}" if entry.expires_at else ""
    reason = f"  ({entry.reason})" if entry.reason else ""
    return f"{entry.verdict:<10} {entry.did}{until}{reason}"


@network_app.command("mode")
def mode(
    ctx: typer.Context,
    new: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(MODES)}.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set the mode: whitelist (peers and allowed DIDs), open (any DID that
    proves its key), quarantine (any such DID, but what one that is neither a peer nor
    allowed sends is held until approved), solitary (nobody, in or out). A denied DID is
    refused in all."""
    state: State = ctx.obj
    with state.open() as node:
        current = node.network.mode() if new is None else node.network.set_mode(new)
    if as_json:
        output.emit_json({"mode": current})
    else:
        print(current)


def _judge(
    ctx: typer.Context, did: str, verdict: str, reason: str, expires: str | None, as_json: bool
) -> None:
    state: State = ctx.obj
    with state.open() as node:
        entry = node.network.judge(did, verdict, reason, check.ahead(expires, "--expires"))
    if as_json:
        output.emit_json(entry)
    else:
        print(_line(entry))


def _verdict(verdict: str, help_text: str) -> None:
    """Register `cis network VERDICT DID [--reason] [--expires]`."""

    def command(
        ctx: typer.Context,
        did: Did,
        reason: Reason = "",
        expires: Expires = None,
        as_json: JsonOpt = False,
    ) -> None:
        _judge(ctx, did, verdict, reason, expires, as_json)

    command.__doc__ = help_text
    network_app.command(verdict)(command)


_verdict("allow", "Let a DID sync with this node (in whitelist mode), replacing a deny.")
_verdict(
    "deny",
    "Refuse a DID in every mode: a session with it ends at once, and its ops are refused"
    " even when another peer passes them on (a lost device).",
)
_verdict(
    "quarantine",
    "Let a DID sync in any mode but solitary, holding what it sends until approved"
    " (`cis network review`).",
)


@network_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The mode, and every allow, deny and quarantine entry."""
    state: State = ctx.obj
    with state.open() as node:
        trust = node.network.trust()
    if as_json:
        output.emit_json(trust)
        return
    print(f"mode {trust.mode}")
    for entry in trust.entries:
        print(_line(entry))


@network_app.command("audit")
def audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest last.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """What sync accepted, held and refused; modes, peers, verdicts, approvals."""
    state: State = ctx.obj
    with state.open() as node:
        entries = node.network.audit_log(limit)
    output.emit_lines(
        entries, as_json, lambda e: f"{output.when(e.at)}  {e.event:<11} {e.did}  {e.detail}"
    )


def _batch_line(batch: HeldBatch) -> str:
    return (
        f"{batch.id:>5}  {output.when(batch.at)}  from {batch.sender}\n"
        f"       ops {batch.first_seq}-{batch.last_seq} of {batch.origin}:"
        f" {batch.ops} ops, {batch.memories} memories  {batch.preview!r}"
    )


@network_app.command("review")
def review(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """What senders in quarantine sent: verified, held, not applied."""
    state: State = ctx.obj
    with state.open() as node:
        batches = node.network.review()
    if not batches and not as_json:
        print("nothing is held")
        return
    output.emit_lines(batches, as_json, _batch_line)


Ids = Annotated[list[int] | None, typer.Argument(help="Batch ids (`cis network review`).")]
All = Annotated[bool, typer.Option("--all", help="Every held batch.")]


@network_app.command("approve")
def approve(
    ctx: typer.Context, ids: Ids = None, every: All = False, as_json: JsonOpt = False
) -> None:
    """Apply held batches, as if just received from a trusted peer."""
    state: State = ctx.obj
    with state.open() as node:
        done = node.network.approve(chosen(ids, every))
    if as_json:
        output.emit_json(done)
        return
    received = done.received
    print(f"approved {len(done.approved)} batches: {received.ops} ops, {received.changed} changed")
    for origin, why in received.refused.items():
        print(f"  refused ops of {origin}: {why}")


@network_app.command("reject")
def reject(
    ctx: typer.Context, ids: Ids = None, every: All = False, as_json: JsonOpt = False
) -> None:
    """Drop held batches (and the later ones of their origins, which build on them);
    their senders' ops up to there are not taken from them again."""
    state: State = ctx.obj
    with state.open() as node:
        gone = node.network.reject(chosen(ids, every))
    if as_json:
        output.emit_json({"rejected": gone})
        return
    print(f"rejected {len(gone)} batches")
