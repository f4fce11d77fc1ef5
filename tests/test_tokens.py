"""API tokens: shown once, stored hashed, limited, revocable."""

from __future__ import annotations

import pytest

from cis import Conflict, InvalidInput, Node, NotFound


def test_create_verify_list_revoke(node: Node) -> None:
    token, secret = node.tokens.create("laptop", scope="project/web", read_only=True)
    assert secret.startswith("cis_") and len(secret) > 40
    found = node.tokens.verify(secret)
    assert found is not None
    assert (found.name, found.scope, found.read_only) == ("laptop", "project/web", True)
    assert found.last_used_at is not None and found.created_at == token.created_at
    assert [t.name for t in node.tokens.list()] == ["laptop"]
    node.tokens.revoke("laptop")
    assert node.tokens.verify(secret) is None
    with pytest.raises(NotFound):
        node.tokens.revoke("laptop")


def test_only_a_hash_is_stored(node: Node) -> None:
    _, secret = node.tokens.create("ci")
    with node.db.read() as conn:
        rows = conn.execute("SELECT * FROM tokens").fetchall()
    assert rows and all(secret not in str(value) for value in rows[0])
    assert all(secret.encode() not in value for value in rows[0] if isinstance(value, bytes))


def test_wrong_and_malformed_secrets_are_refused(node: Node) -> None:
    node.tokens.create("a")
    for bad in ("", "cis_", "cis_" + "x" * 43, "not-a-token", "cis_" + "y" * 500):
        assert node.tokens.verify(bad) is None


def test_bad_names_and_duplicates(node: Node) -> None:
    node.tokens.create("dup")
    with pytest.raises(Conflict, match="revoke it first"):
        node.tokens.create("dup")
    for name in ("", "has space", "-lead", "x" * 65):
        with pytest.raises(InvalidInput):
            node.tokens.create(name)
    with pytest.raises(InvalidInput, match="unknown scope"):
        node.tokens.create("scoped", scope="nowhere")
