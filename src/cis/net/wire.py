"""The sync protocol's messages: MessagePack, one per WebSocket frame, each frame capped."""

from __future__ import annotations

import msgspec

MAX_FRAME_BYTES = 8 * 1024 * 1024  # the WebSocket layer refuses a larger frame
OPS_BYTES_PER_FRAME = 4 * 1024 * 1024  # ops of a frame, cut at a signature (every 32 ops)
OPS_PER_FRAME = 2000  # and at most so many: their vectors (1.5 KiB each) fit beside


class Hello(msgspec.Struct, tag="hello", frozen=True):
    """Who speaks, a fresh nonce, and when (ms): the start of the handshake."""

    did: str
    nonce: bytes
    at: int


class Proof(msgspec.Struct, tag="proof", frozen=True):
    """A signature over the handshake transcript (see net/handshake.py)."""

    signature: bytes


class Pair(msgspec.Struct, tag="pair", frozen=True):
    """A joining node's proof that it holds the pairing code (an HMAC of the handshake
    transcript under it), and the address its own sync listener has."""

    mac: bytes
    address: str


class Paired(msgspec.Struct, tag="paired", frozen=True):
    """The server's answer: its own HMAC under the code, so the joiner knows it paired
    with the node that made the code and not with one in the middle."""

    mac: bytes


class Have(msgspec.Struct, tag="have", frozen=True):
    """What the sender holds: per origin, the last op of its chain, and that op's hash
    (which stands for the chain up to it: a fork shows)."""

    vector: dict[str, int]
    heads: dict[str, bytes] = {}


class Ops(msgspec.Struct, tag="ops", frozen=True):
    """Ops the receiver lacks, up to a signature: (op body, signature or None); and the
    sender's vectors of their memories (id, text hash, model, float32 bytes)."""

    ops: list[tuple[bytes, bytes | None]]
    vectors: list[tuple[str, bytes, str, bytes]] = []


class Bye(msgspec.Struct, tag="bye", frozen=True):
    """Why the sender ends the session (a refusal, a shutdown)."""

    reason: str


Message = Hello | Proof | Pair | Paired | Have | Ops | Bye
_encode = msgspec.msgpack.Encoder()
_decode = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    return _encode.encode(message)


def decode(frame: bytes | str) -> Message:
    """The message of a frame; msgspec.ValidationError or DecodeError if it is none."""
    if isinstance(frame, str):
        raise msgspec.ValidationError("a text frame: the protocol speaks binary")
    message: Message = _decode.decode(frame)
    return message
