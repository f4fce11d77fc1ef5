"""A token's limits in the Python API (`Node.access`): scope and read-only."""

from __future__ import annotations

import pytest

from cis import Node
from cis.errors import Forbidden, InvalidInput, NotFound
from cis.model import Filter, Listing, Search


@pytest.fixture
def stocked(node: Node) -> dict[str, str]:
    ids = {
        "web": node.memory.add("The web app uses React", scope="project/web", key="stack").id,
        "ops": node.memory.add("Pager rotation is weekly", scope="project/ops").id,
        "home": node.memory.add("Billing runs on PostgreSQL", key="stack").id,
    }
    return ids


def test_unlimited_caller_sees_everything(node: Node, stocked: dict[str, str]) -> None:
    caller = node.access()
    assert caller.get("stack").id == stocked["home"]
    assert caller.get("stack", scope="project/web").id == stocked["web"]
    assert len(caller.list(Listing()).items) == 3
    assert {
        h.memory.id for h in caller.search(Search(query="stack react pager billing", mode="text"))
    } == set(stocked.values())


def test_scoped_token_stays_in_its_scope(node: Node, stocked: dict[str, str]) -> None:
    token, _ = node.tokens.create("web", scope="project/web")
    caller = node.access(token)
    assert caller.get("stack").id == stocked["web"]  # keys are looked up in its scope
    for other in (stocked["ops"], stocked["home"]):
        with pytest.raises(NotFound):
            caller.get(other)
        with pytest.raises(NotFound):
            caller.history(other)
        with pytest.raises(NotFound):
            caller.update(other, "changed")
        with pytest.raises(NotFound):
            caller.delete(other)
    with pytest.raises(Forbidden, match="limited to scope project/web"):
        caller.get("stack", scope="global")
    with pytest.raises(Forbidden):
        caller.search(Search(query="pager", scope="project/ops"))
    assert [m.id for m in caller.list(Listing()).items] == [stocked["web"]]
    hits = caller.search(Search(query="stack react pager billing", mode="text"))
    assert [h.memory.id for h in hits] == [stocked["web"]]
    assert [line.count(b'"project/web"') for line in caller.export(Filter())] == [1]
    added = caller.add("Deploys go through CI")
    assert added.scope == "project/web"
    with pytest.raises(Forbidden):
        caller.add("elsewhere", scope="project/ops")
    assert node.memory.get(stocked["ops"]) is not None  # nothing outside was touched


def test_scoped_import_lands_in_scope_or_is_refused_whole(node: Node) -> None:
    token, _ = node.tokens.create("web", scope="project/web")
    caller = node.access(token)
    imported = caller.import_data(
        b'{"text": "one"}\n{"text": "two", "scope": "project/web"}\n', name="x"
    )
    assert {m.scope for m in imported.added} == {"project/web"}
    with pytest.raises(Forbidden, match="line 2"):
        caller.import_data(b'{"text": "three"}\n{"text": "four", "scope": "global"}\n', name="x")
    assert node.memory.count() == 2
    with pytest.raises(InvalidInput, match="line 1"):
        caller.import_data(b"not json\n", name="x")


def test_read_only_token_cannot_write(node: Node, stocked: dict[str, str]) -> None:
    token, _ = node.tokens.create("reader", read_only=True)
    caller = node.access(token)
    assert caller.get(stocked["ops"]).text.startswith("Pager")
    for write in (
        lambda: caller.add("x"),
        lambda: caller.set("k", "x"),
        lambda: caller.update(stocked["ops"], "x"),
        lambda: caller.delete(stocked["ops"]),
        lambda: caller.import_data(b'{"text": "x"}\n', name="x"),
    ):
        with pytest.raises(Forbidden, match="read-only"):
            write()
    assert node.memory.count() == 3


def test_pages_follow_cursors_to_the_end(node: Node) -> None:
    node.memory.add_many([{"text": f"note {i}"} for i in range(7)])
    caller, seen, cursor = node.access(), [], None
    while True:
        page = caller.list(Listing(limit=3, cursor=cursor))
        seen += [m.text for m in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"note {i}" for i in range(7)]
    with pytest.raises(InvalidInput):
        caller.list(Listing(cursor="no-such-id"))


def test_nothing_in_other_scopes_moves_a_scoped_tokens_scores(node: Node) -> None:
    """Word statistics (IDF, lengths) of a scoped search come from its scope alone."""
    node.memory.add("The kestrel nests on the cliff above the harbour", scope="project/a")
    node.memory.add("Harbour fees are paid in March", scope="project/a")
    token, _ = node.tokens.create("a", scope="project/a")
    caller = node.access(token)
    asked = Search(query="kestrel harbour fees", mode="text")

    def scores() -> list[tuple[str, float | None]]:
        return [(h.memory.text, h.text_score) for h in caller.search(asked)]

    before = scores()
    node.memory.add_many(
        [{"text": f"kestrel number {i} near a harbour", "scope": "project/b"} for i in range(300)]
        + [{"text": f"unrelated note {i} about fees", "scope": "global"} for i in range(300)]
    )
    node.memory.cache.clear()  # computed anew, not remembered
    assert scores() == before
    unscoped = node.access().search(Search(query=asked.query, mode="text", scope="project/a"))
    assert [(h.memory.text, h.text_score) for h in unscoped] == before
