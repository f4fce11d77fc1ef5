"""The sync listener's TLS: a certificate that names the node's DID, and no session
tickets (a ticket arriving while websockets' two threads share one SSL object lost an
upgrade request now and then)."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cis.net import tls
from cis.net.identity import Identity


def _session(identity: Identity, workdir: Path) -> tuple[ssl.SSLSession | None, bytes]:
    """One TLS 1.3 exchange over a socket pair: the client's session, after data came
    back, and the certificate the server showed (DER)."""
    server_end, client_end = socket.socketpair()
    context = tls.server_context(identity, workdir)

    def serve() -> None:
        with context.wrap_socket(server_end, server_side=True) as sock:
            sock.sendall(b"x")
            sock.recv(1)  # until the client is done

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with tls.client_context().wrap_socket(client_end) as sock:
            assert sock.recv(1) == b"x"  # any ticket is sent before this byte
            shown = sock.getpeercert(binary_form=True)
            session = sock.session
            sock.sendall(b"y")
    finally:
        thread.join()
    assert shown is not None
    return session, shown


def test_the_listener_shows_its_did_and_issues_no_tickets(tmp_path: Path) -> None:
    me = Identity(os.urandom(32))
    session, shown = _session(me, tmp_path)
    assert tls.peer_did(shown) == me.did
    assert session is None or not session.has_ticket
    assert not any(tmp_path.iterdir())  # the key file is gone


def test_a_certificate_not_signed_by_its_own_key_names_no_did() -> None:
    me, other = Identity(os.urandom(32)), Identity(os.urandom(32))
    honest = tls.certificate(me)
    forged = (
        x509.CertificateBuilder()
        .subject_name(honest.subject)
        .issuer_name(honest.issuer)
        .public_key(me.private_key().public_key())
        .serial_number(honest.serial_number)
        .not_valid_before(honest.not_valid_before_utc)
        .not_valid_after(honest.not_valid_after_utc)
        .sign(other.private_key(), None)  # my key inside, another key's signature
    )
    assert tls.peer_did(honest.public_bytes(Encoding.DER)) == me.did
    assert tls.peer_did(forged.public_bytes(Encoding.DER)) is None
    assert tls.peer_did(b"not a certificate") is None
