"""A node's identity: an Ed25519 key, named by its DID (did:key, multicodec ed25519-pub)."""

from __future__ import annotations

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import InvalidInput

DID_PREFIX = "did:key:z"
_ED25519_PUB = b"\xed\x01"  # the multicodec of an Ed25519 public key (varint 0xed)
SEED_BYTES = 32


def did_of(public: bytes) -> str:
    """The did:key of a raw 32-byte Ed25519 public key."""
    return DID_PREFIX + base58.b58encode(_ED25519_PUB + public).decode("ascii")


def public_key(did: str) -> Ed25519PublicKey:
    """The Ed25519 key a did:key names; InvalidInput if it names none."""
    if not isinstance(did, str) or not did.startswith(DID_PREFIX):
        raise InvalidInput(f"{did!r} is not a did:key (it starts with {DID_PREFIX}6Mk...)")
    try:
        raw = base58.b58decode(did[len(DID_PREFIX) :])
    except ValueError as exc:
        raise InvalidInput(f"{did!r} is not a did:key: {exc}") from exc
    if len(raw) != 2 + 32 or not raw.startswith(_ED25519_PUB):
        raise InvalidInput(f"{did!r} is not the did:key of an Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(raw[2:])


def verify(did: str, signature: bytes, data: bytes) -> bool:
    """Whether `signature` over `data` was made by the key `did` names."""
    try:
        public_key(did).verify(signature, data)
    except (InvalidSignature, InvalidInput, ValueError):
        return False
    return True


class Identity:
    """This node's key pair. The private half never leaves this object: no repr, no
    export, only signatures."""

    def __init__(self, seed: bytes):
        if len(seed) != SEED_BYTES:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.did = did_of(self.public)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def private_key(self) -> Ed25519PrivateKey:
        """The key itself: the TLS certificate this node presents is signed by it."""
        return self._key

    def __repr__(self) -> str:
        return f"Identity({self.did})"
