"""TLS 1.3 for sync: each node presents a certificate self-signed by its node key, and a
peer pins it to the DID it expects (no certificate authority)."""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID

from .identity import Identity, did_of

VALID_YEARS = 20


def certificate(identity: Identity) -> x509.Certificate:
    """This node's certificate: its DID as the subject, signed by its own key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.did)])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)  # the same on every call
    key = identity.private_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(identity.public).digest()[:16], "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365 * VALID_YEARS))
        .sign(key, None)
    )


def server_context(identity: Identity, workdir: Path) -> ssl.SSLContext:
    """TLS 1.3 only, presenting this node's certificate, with no session tickets.
    Python's ssl loads a key only from a file: it is written encrypted under a one-time
    password that never leaves memory, to a 0600 file that is removed before this
    returns."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # No session tickets: a TLS 1.3 ticket arrives after the handshake, while the
    # client's reader thread (websockets) reads it and its other thread sends the
    # upgrade request on the same SSL object. About 1 in 800 such requests was lost
    # on 2 busy cores and the open timed out (0 in 12,000 without tickets). No
    # client resumes a session here: each connection makes a new context.
    context.num_tickets = 0
    password = os.urandom(32).hex().encode()
    cert = certificate(identity).public_bytes(Encoding.PEM)
    key = identity.private_key().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(password)
    )
    fd, name = tempfile.mkstemp(prefix=".tls-", suffix=".pem", dir=workdir)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(cert + key)
        context.load_cert_chain(name, password=password)
    finally:
        os.unlink(name)
    return context


def client_context() -> ssl.SSLContext:
    """TLS 1.3 only; the server's certificate is checked against the DID expected
    (see peer_did), not against a certificate authority."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def peer_did(der: bytes) -> str | None:
    """The DID whose key a certificate (DER) holds, if it is an Ed25519 one signed by
    that same key; else None."""
    try:
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        if not isinstance(key, Ed25519PublicKey):
            return None
        key.verify(cert.signature, cert.tbs_certificate_bytes)
    except Exception:  # any malformed or foreign certificate: no DID
        return None
    return did_of(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def fingerprint(der: bytes) -> bytes:
    """The hash of a certificate, bound into the handshake so no one can stand between."""
    return hashlib.sha256(der).digest()
