"""The sync handshake: both nodes sign one transcript (both DIDs, both nonces, both
times, the hash of the server's TLS certificate), so neither a replay nor a node in the
middle passes: a replayed proof signs another nonce, and a node in the middle presents
another certificate than the one the server signs for."""

from __future__ import annotations

import hmac
import os

import msgspec

from ..clock import MAX_AHEAD_MS
from .identity import Identity, verify
from .wire import Hello

NONCE_BYTES = 32
_encode = msgspec.msgpack.Encoder()


def hello(identity: Identity, now: int) -> Hello:
    return Hello(did=identity.did, nonce=os.urandom(NONCE_BYTES), at=now)


def transcript(role: str, client: Hello, server: Hello, certificate: bytes) -> bytes:
    """What a side signs: its role first, so a server's proof never serves as a client's."""
    return b"cis-handshake-v1\x00" + _encode.encode(
        (
            role,
            client.did,
            client.nonce,
            client.at,
            server.did,
            server.nonce,
            server.at,
            certificate,
        )
    )


def prove(identity: Identity, role: str, client: Hello, server: Hello, certificate: bytes) -> bytes:
    return identity.sign(transcript(role, client, server, certificate))


def problem(
    signer: Hello,
    signature: bytes,
    role: str,
    client: Hello,
    server: Hello,
    certificate: bytes,
    now: int,
) -> str | None:
    """Why a side's proof is refused, or None if it holds."""
    if len(client.nonce) != NONCE_BYTES or len(server.nonce) != NONCE_BYTES:
        return "a nonce of the wrong length"
    if abs(signer.at - now) > MAX_AHEAD_MS:
        return f"its clock is {abs(signer.at - now) / 1000:.0f} s off this node's"
    if not verify(signer.did, signature, transcript(role, client, server, certificate)):
        return "its proof of key does not verify"
    return None


def pair_mac(code: str, role: str, client: Hello, server: Hello, certificate: bytes) -> bytes:
    """A side's proof that it knows the pairing code, bound to this very handshake."""
    return hmac.new(
        code.encode(), transcript("pair-" + role, client, server, certificate), "sha256"
    ).digest()


def pair_matches(
    mac: bytes, code: str, role: str, client: Hello, server: Hello, certificate: bytes
) -> bool:
    return hmac.compare_digest(mac, pair_mac(code, role, client, server, certificate))
