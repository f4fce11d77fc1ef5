"""The real `cis serve` over HTTP: tokens, limits, errors, metrics, OpenAPI, import/export."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cis import Node
from cis.errors import SkillError
from cis.model import Filter
from cis.server import serve

from ..conftest import CIS
from .shells import env_for, served

MAX_BODY = 50_000
MCP_HELLO = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


class Server:
    def __init__(self, url: str, secret: str, data_dir: Path, pid: int):
        self.url = url
        self.data_dir = data_dir
        self.pid = pid
        self.client = self.as_(secret)

    def as_(self, secret: str | None) -> httpx.Client:
        headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def token(self, name: str, *flags: str) -> str:
        made = subprocess.run(
            [CIS, "token", "create", name, *flags, "--json"],
            env=env_for(self.data_dir),
            capture_output=True,
            check=True,
        )
        return str(json.loads(made.stdout)["secret"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("http") / "node"
    with served(data_dir, CIS_HTTP_MAX_BODY_BYTES=str(MAX_BODY)) as (url, secret, pid):
        yield Server(url, secret, data_dir, pid)


def error_of(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] and error["message"]
    return error


def test_every_route_but_healthz_needs_a_token(server: Server) -> None:
    anonymous = server.as_(None)
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    for path in ("/v1/status", "/v1/memories", "/v1/search?q=x", "/metrics", "/openapi.json"):
        answer = anonymous.get(path)
        assert error_of(answer, 401)["code"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.post("/mcp", json={}).status_code == 401
    assert server.as_("cis_not-a-real-token").get("/v1/status").status_code == 401
    basic = anonymous.get("/v1/status", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert "Bearer" in error_of(basic, 401)["message"]


def test_a_revoked_token_is_refused_at_once(server: Server) -> None:
    secret = server.token("short-lived")
    assert server.as_(secret).get("/v1/status").status_code == 200
    subprocess.run(
        [CIS, "token", "revoke", "short-lived"], env=env_for(server.data_dir), check=True
    )
    assert server.as_(secret).get("/v1/status").status_code == 401


def test_read_only_and_scoped_tokens(server: Server) -> None:
    kept = server.client.post("/v1/memories", json={"text": "outside", "scope": "project/a"})
    reader = server.as_(server.token("reader", "--read-only"))
    assert error_of(reader.post("/v1/memories", json={"text": "x"}), 403)["code"] == "forbidden"
    assert reader.get(f"/v1/memories/{kept.json()['id']}").status_code == 200
    scoped = server.as_(server.token("scoped", "--scope", "project/b"))
    made = scoped.post("/v1/memories", json={"text": "inside b"})
    assert made.status_code == 201 and made.json()["scope"] == "project/b"
    assert scoped.get(f"/v1/memories/{kept.json()['id']}").status_code == 404
    assert scoped.get("/v1/search", params={"q": "x", "scope": "project/a"}).status_code == 403
    listed = scoped.get("/v1/memories").json()["items"]
    assert {m["scope"] for m in listed} == {"project/b"}


@pytest.mark.parametrize(
    ("method", "path", "body", "expect"),
    [
        ("post", "/v1/memories", b'{"text": ', "not valid JSON"),
        ("post", "/v1/memories", b"", "empty"),
        ("post", "/v1/memories", b'{"text": 5}', "text must be a string, not a whole number"),
        (
            "post",
            "/v1/memories",
            b'{"text": "x", "colour": "red"}',
            "unknown field colour; the body",
        ),
        ("post", "/v1/memories", b'["a list"]', "the body must be an object, not a list"),
        ("post", "/v1/memories", b'{"text": "caf\xe9"}', "UTF-8"),
        ("post", "/v1/memories", b'{"text": "x", "scope": "nowhere"}', "scope"),
        (
            "post",
            "/v1/memories",
            b'{"text": "x", "tags": "not-a-list"}',
            "tags must be a list",
        ),
        (
            "post",
            "/v1/search",
            b'{"query": "x", "limit": "5"}',
            "limit must be a whole number",
        ),
        ("post", "/v1/search", b'{"query": "x", "limit": 0}', "limit"),
        ("post", "/v1/search", b'{"query": "x", "mode": "psychic"}', "mode"),
        ("patch", "/v1/memories/nothing-here", b'{"txt": "x"}', "unknown field txt"),
        ("get", "/v1/search?q=x&limit=abc", b"", "limit"),
        ("get", "/v1/search?q=x&scop=project/a", b"", "unknown query parameter(s): scop"),
        ("get", "/v1/search", b"", "q"),
        ("get", "/v1/memories?cursor=nope", b"", "cursor"),
    ],
)
def test_bad_requests_get_a_400_that_says_why(
    server: Server, method: str, path: str, body: bytes, expect: str
) -> None:
    answer = server.client.request(method, path, content=body or None)
    assert expect in error_of(answer, 400)["message"]


def test_text_over_its_limit_is_refused(server: Server) -> None:
    big = "x" * 70_000
    answer = server.as_(None).post(
        "/v1/memories",
        json={"text": big},
        headers=dict(server.client.headers),
    )
    assert error_of(answer, 413)["code"] == "too_large"


def test_unknown_routes_and_methods_answer_json(server: Server) -> None:
    assert error_of(server.client.get("/v2/nothing"), 404)["code"] == "not_found"
    assert error_of(server.client.put("/v1/search"), 405)["code"] == "method_not_allowed"
    missing = server.client.get("/v1/memories/no-such-memory")
    assert "no such id" in error_of(missing, 404)["message"]


def test_body_limit_applies_with_and_without_content_length(server: Server) -> None:
    payload = json.dumps({"text": "y" * (MAX_BODY + 10)}).encode()
    assert server.client.post("/v1/memories", content=payload).status_code == 413

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    answer = server.client.post("/v1/memories", content=chunks())
    assert error_of(answer, 413)["code"] == "too_large"
    assert server.client.get("/healthz").status_code == 200


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
fields = st.sampled_from(
    ["text", "query", "key", "scope", "domain", "category", "tags", "metadata", "limit", "mode"]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.dictionaries(fields, json_values, max_size=5), route=st.sampled_from(["m", "s", "p"])
)
def test_no_body_yields_a_server_error(server: Server, body: dict[str, Any], route: str) -> None:
    if route == "m":
        answer = server.client.post("/v1/memories", json=body)
    elif route == "s":
        answer = server.client.post("/v1/search", json=body)
    else:
        answer = server.client.patch("/v1/memories/some-key", json=body)
    assert answer.status_code < 500, answer.text


def test_post_search_matches_get(server: Server) -> None:
    server.client.post("/v1/memories", json={"text": "The kettle is in the blue cupboard"})
    params = {"q": "where is the kettle", "limit": 3, "mode": "text"}
    got = server.client.get("/v1/search", params=params).json()
    posted = server.client.post(
        "/v1/search", json={"query": "where is the kettle", "limit": 3, "mode": "text"}
    ).json()
    assert got == posted and got["hits"][0]["memory"]["text"].startswith("The kettle")


def test_import_and_streamed_export_round_trip(server: Server, tmp_path: Path) -> None:
    c = server.client
    as_list = [{"text": "imported from a list", "scope": "project/io"}]
    assert c.post("/v1/import", json=as_list).json() == {"imported": 1, "skipped": 0}
    lines = (
        b'{"text": "line one", "scope": "project/io"}\n\n'
        b'{"text": "line two", "scope": "project/io"}\n'
    )
    answer = c.post("/v1/import", content=lines, headers={"content-type": "application/x-ndjson"})
    assert answer.json() == {"imported": 2, "skipped": 0}
    bad = c.post("/v1/import", content=b'{"text": "ok"}\n{"text": ""}\n')
    assert "line 2" in error_of(bad, 400)["message"]
    exported = c.get("/v1/export", params={"scope": "project/io"})
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in exported.text.splitlines()]
    assert [r["text"] for r in records] == ["imported from a list", "line one", "line two"]
    (tmp_path / "dump.jsonl").write_text(exported.text)
    with Node.open(tmp_path / "other") as other:
        other.memory.import_file(tmp_path / "dump.jsonl")
        again = [json.loads(line) for line in other.access().export(Filter())]
    assert again == records


def test_metrics_and_openapi(server: Server) -> None:
    c = server.client
    c.get("/v1/search", params={"q": "metrics please"})
    text = c.get("/metrics").text
    for name in (
        'cis_http_requests_total{method="GET",route="/v1/search",status="200"}',
        'cis_http_request_seconds_bucket{method="GET",route="/v1/search",le="0.005"}',
        'cis_search_seconds_count{mode="hybrid"}',
        "cis_embed_queue_depth ",
        "cis_embedded_total ",
        "cis_index_vectors ",
        "cis_cache_hit_ratio ",
    ):
        assert name in text, name
    counted = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(("cis_query_embeddings_total ", "cis_query_batches_total "))
    }
    assert counted["cis_query_embeddings_total"] >= counted["cis_query_batches_total"] >= 1
    spec = c.get("/openapi.json").json()
    assert {"/v1/memories", "/v1/search", "/v1/import", "/v1/export", "/metrics"} <= set(
        spec["paths"]
    )
    assert {"Memory", "Hit", "AddBody", "Search", "ErrorBody"} <= set(spec["components"]["schemas"])
    add = spec["paths"]["/v1/memories"]["post"]
    assert add["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("AddBody")


def _wait_for(client: httpx.Client, run_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/v1/dags/{run_id}").json()
        if run["status"] in states:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} stayed {run['status']}")


def test_workflows_over_http(server: Server, tmp_path: Path) -> None:
    c = server.client
    flow = 'name = "web"\n[[tasks]]\nid = "a"\ncommand = "echo hi {{ inputs.who }}"\n'
    started = c.post("/v1/dags", json={"workflow": flow, "inputs": {"who": "Kim"}})
    assert started.status_code == 202 and started.json()["status"] in ("pending", "running")
    run = _wait_for(c, started.json()["id"], ("succeeded", "failed"))
    assert run["status"] == "succeeded" and run["tasks"][0]["output"] == "hi Kim\n"
    assert c.get(f"/v1/dags/{run['id']}/logs").text == "[a] hi Kim\n"
    assert run["id"] in {r["id"] for r in c.get("/v1/dags").json()["runs"]}
    long = tmp_path / "long.toml"
    long.write_text('[dag]\nname = "long"\n[[dag.tasks]]\nid = "s"\ncommand = "sleep 60"\n')
    slow = c.post("/v1/dags", json={"file": str(long)}).json()
    _wait_for(c, slow["id"], ("running",))
    assert c.post(f"/v1/dags/{slow['id']}/cancel").status_code == 200
    assert _wait_for(c, slow["id"], ("cancelled",))["tasks"][0]["status"] == "cancelled"
    bad = c.post(
        "/v1/dags",
        json={
            "workflow": '[dag]\nname = "x"\n[[dag.tasks]]\nid = "a"\n'
            'command = "true"\ndeps = ["zz"]\n'
        },
    )
    assert "workflow.toml:6: task 'a': unknown dep 'zz'" in error_of(bad, 400)["message"]
    reader = server.as_(server.token("dag-reader", "--read-only"))
    assert error_of(reader.get("/v1/dags"), 403)["code"] == "forbidden"
    scoped = server.as_(server.token("dag-scoped", "--scope", "project/x"))
    assert scoped.post("/v1/dags", json={"workflow": flow}).status_code == 403


def test_skills_over_http_and_as_remote_skills(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wordcount = Path(__file__).parents[2] / "examples" / "skills" / "wordcount"
    subprocess.run(
        [CIS, "skill", "install", str(wordcount)], env=env_for(server.data_dir), check=True
    )
    c = server.client
    assert [s["skill"]["name"] for s in c.get("/v1/skills").json()["skills"]] == ["wordcount"]
    ran = c.post("/v1/skills/wordcount/run", json={"text": "three little words"}).json()
    assert ran["output"] == {"words": 3, "characters": 18}
    failed = c.post("/v1/skills/wordcount/run", json={"no": "text"})
    assert error_of(failed, 422)["code"] == "skill_failed"
    reader = server.as_(server.token("skill-reader", "--read-only"))
    assert reader.post("/v1/skills/wordcount/run", json={"text": "x"}).status_code == 403

    remote = tmp_path / "far-count"
    remote.mkdir()
    (remote / "skill.toml").write_text(
        '[skill]\nname = "far-count"\ntype = "remote"\ntoken_env = "FAR_TOKEN"\n'
        f'entry = "{server.url}/v1/skills/wordcount/run"\n'
    )
    monkeypatch.setenv("FAR_TOKEN", server.token("far"))
    with Node.open(tmp_path / "near") as near:
        near.skills.install(remote)
        assert near.skills.run("far-count", {"text": "a b"}).output == {"words": 2, "characters": 3}
        monkeypatch.setenv("FAR_TOKEN", "cis_wrong")
        with pytest.raises(SkillError, match="unauthorized"):
            near.skills.run("far-count", {"text": "a b"})


def test_failing_requests_leave_no_connection_behind(server: Server) -> None:
    """Reads that fail (404s, a bad cursor) give their database connection back."""
    process = psutil.Process(server.pid)
    client = server.client

    def fail(times: int) -> int:
        for number in range(times):
            error_of(client.get(f"/v1/memories/missing-{number}/history"), 404)
            error_of(client.get("/v1/memories", params={"cursor": f"bad-{number}"}), 400)
        return int(process.num_fds())

    settled = fail(30)
    assert fail(800) - settled <= 2  # an idle HTTP connection of uvicorn may come or go


def test_a_writer_elsewhere_does_not_hold_up_requests(server: Server) -> None:
    """A token's first request writes its last use off the request's path: with another
    process holding the write lock, requests answer at once."""
    secret = server.token("first-use")
    with Node.open(server.data_dir, background=False) as holder, holder.db.write() as conn:
        conn.execute("INSERT INTO meta VALUES ('held-by-test', 1)")
        answer = server.as_(secret).get("/v1/memories", timeout=5)  # the busy timeout: 10 s
        assert answer.status_code == 200, answer.text
    listed = server.client.get("/v1/status")
    assert listed.status_code == 200


class Raw(str):
    """A body sent as it is (json.dumps cannot write what is nested 1,000 deep)."""


DEEP = Raw('{"text": "x", "metadata": {"k": ' + "[" * 1200 + "]" * 1200 + "}}")


@pytest.mark.parametrize(
    "method, path, sent, named",
    [
        ("post", "/v1/memories", {"text": "a\u0000b"}, "text holds a NUL"),
        ("post", "/v1/memories", {"text": "x", "tags": ["t\u0000"]}, "tags[0] holds a NUL"),
        ("post", "/v1/memories", DEEP, "nested"),
        ("post", "/v1/memories", {"text": "x", "event_at": 2**63}, "event_at"),
        ("post", "/v1/memories", {"text": "x", "event_at": 2**64 + 5}, "event_at"),
        ("post", "/v1/search", {"query": "x", "since": 2**63}, "since"),
        ("post", "/v1/search", {"query": "x", "until": "2026-01-01\u0000"}, "until holds a NUL"),
        ("get", "/v1/search?q=x&since=9223372036854775808", None, "since"),
        ("get", "/v1/memories?until=99999999999999999999999", None, "until"),
        ("get", "/v1/search?q=a%00b", None, "q holds a NUL"),
        ("get", "/v1/memories/a%00b", None, "id_or_key holds a NUL"),
        ("post", "/v1/dags", {"file": "/tmp/a\u0000b.toml"}, "file holds a NUL"),
    ],
)
def test_nothing_a_caller_sends_is_a_500(
    server: Server, method: str, path: str, sent: Any, named: str
) -> None:
    body = sent if isinstance(sent, Raw) else json.dumps(sent)
    kwargs = {} if sent is None else {"content": body}
    answer = server.client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert named in error_of(answer, 400)["message"]


def test_a_body_nested_past_any_limit_is_a_400(server: Server) -> None:
    raw = b'{"text": "x", "metadata": {"k": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}"
    answer = server.as_(server.client.headers["authorization"].split()[1]).post(
        "/v1/memories", content=raw
    )
    assert answer.status_code in (400, 413), answer.text


def test_a_page_of_1000_over_http(server: Server) -> None:
    answer = server.client.get("/v1/memories", params={"limit": 1000})
    assert answer.status_code == 200, answer.text


def test_oauth_discovery_finds_nothing_to_discover(server: Server) -> None:
    """A client that meets a 401 looks for OAuth; it learns at once there is none."""
    anonymous = server.as_(None)
    for path in (
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
    ):
        assert error_of(anonymous.get(path), 404)["code"] == "not_found"
    assert anonymous.post("/mcp", json={}).status_code == 401


def test_mcp_traffic_is_labelled_in_metrics(server: Server) -> None:
    server.client.post(
        "/mcp", json=MCP_HELLO, headers={"accept": "application/json, text/event-stream"}
    )
    metrics = server.client.get("/metrics").text
    assert 'route="/mcp"' in metrics


def test_a_scoped_token_sees_its_scope_alone(server: Server) -> None:
    server.client.post("/v1/memories", json={"text": "elsewhere", "scope": "project/other"})
    secret = server.token("scoped-status", "--scope", "project/mine")
    scoped = server.as_(secret)
    scoped.post("/v1/memories", json={"text": "mine"})
    status = scoped.get("/v1/status").json()
    assert set(status) == {"scope", "model", "memories", "pending_embeddings", "vectors"}
    assert status["scope"] == "project/mine" and status["memories"] == 1
    assert error_of(scoped.get("/metrics"), 403)["code"] == "forbidden"
    mine = scoped.get("/v1/memories").json()["items"]
    assert [m["text"] for m in mine] == ["mine"]
    other = server.client.get("/v1/memories", params={"scope": "project/other"}).json()
    cursor = other["items"][0]["id"]  # a real id, of another scope
    answer = scoped.get("/v1/memories", params={"cursor": cursor})
    assert "names no memory" in error_of(answer, 400)["message"]
    lines = json.dumps({"id": cursor, "text": "probe"}) + "\n"
    probe = scoped.post("/v1/import", content=lines)
    assert "may not set memory ids" in error_of(probe, 403)["message"]


def test_peers_and_sync_over_http(server: Server) -> None:
    c = server.client
    other = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    assert error_of(c.post("/v1/peers", json={"did": "did:web:x", "address": "h:1"}), 400)
    assert error_of(c.post("/v1/peers", json={"did": other, "address": "no port"}), 400)
    added = c.post("/v1/peers", json={"did": other, "address": "127.0.0.1:9"})
    assert added.status_code == 201 and added.json()["did"] == other
    assert [p["did"] for p in c.get("/v1/peers").json()["peers"]] == [other]
    reports = c.post("/v1/sync").json()["reports"]
    assert reports[0]["peer"] == other and "cannot reach" in reports[0]["error"]
    events = [e["event"] for e in c.get("/v1/network/audit").json()["audit"]]
    assert "added" in events
    scoped = server.as_(server.token("peer-scoped", "--scope", "project/p"))
    assert error_of(scoped.get("/v1/peers"), 403)["code"] == "forbidden"
    reader = server.as_(server.token("peer-reader", "--read-only"))
    assert error_of(reader.post("/v1/sync"), 403)["code"] == "forbidden"
    assert error_of(reader.delete(f"/v1/peers/{other}"), 403)
    assert c.delete(f"/v1/peers/{other}").json()["did"] == other
    assert error_of(c.delete(f"/v1/peers/{other}"), 404)
    assert c.get("/v1/node").json()["did"].startswith("did:key:z6Mk")


def test_no_request_reaches_an_opentelemetry_exporter_set_up_in_the_process(
    tmp_path: Path,
) -> None:
    """FastAPI and the MCP SDK trace into any tracer provider the process has: query
    strings and error messages that hold memory text would leave the node with them."""
    probe = Path(__file__).parent.parent / "fixtures" / "telemetry" / "probe.py"
    done = subprocess.run(
        [sys.executable, str(probe), str(tmp_path / "node")],
        input=json.dumps(MCP_HELLO),  # the MCP initialize it sends
        capture_output=True,
        text=True,
        env=env_for(tmp_path / "node"),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "0"  # spans started


def test_the_server_runs_on_uvloop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's `loop` setting reaches only its own run(); serve_http makes the loop."""
    loops: list[type] = []

    async def record(*_: object) -> None:
        loops.append(type(asyncio.get_running_loop()))

    monkeypatch.setattr(serve, "_serve", record)
    with Node.open(tmp_path / "node", background=False) as node:
        serve.serve_http(node, "127.0.0.1", 0)
    assert loops == [uvloop.Loop]
