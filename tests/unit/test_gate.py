"""api.gate: Host, Origin and body-size refusals, in front of a fake downstream app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from sensorpipe.api.gate import Gate, host_name
from sensorpipe.settings import LOOPBACK_HOSTS, ApiSettings

LIMIT = 1_024


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"method": request.method, "bytes": len(body)})


def _client(hosts: list[str] | None = None, origins: tuple[str, ...] = ()) -> TestClient:
    app = Starlette(routes=[Route("/x", echo, methods=["GET", "PUT", "POST"])])
    gated = Gate(app, allowed_hosts=hosts, cors_origins=origins, max_body_bytes=LIMIT)
    return TestClient(gated, base_url="http://127.0.0.1:8000")


@pytest.fixture
def client() -> Iterator[TestClient]:
    with _client(list(LOOPBACK_HOSTS), origins=("http://localhost:3000",)) as c:
        yield c


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:8000", "[::1]:8000", "::1"])
def test_loopback_names_are_served(client: TestClient, host: str) -> None:
    assert client.get("/x", headers={"Host": host}).status_code == 200


def test_a_rebound_name_is_refused_before_any_route(client: TestClient) -> None:
    for method in ("GET", "PUT"):
        r = client.request(method, "/x", headers={"Host": "evil.example:8000"}, content=b"{}")
        assert r.status_code == 400
        assert "evil.example" in r.json()["detail"]


def test_any_name_when_no_list_is_given() -> None:
    with _client(None) as c:
        assert c.get("/x", headers={"Host": "sensorpipe.example.com"}).status_code == 200


def test_writes_from_a_foreign_origin_are_refused(client: TestClient) -> None:
    r = client.put("/x", headers={"Origin": "http://evil.example"}, content=b"{}")
    assert r.status_code == 403
    assert "evil.example" in r.json()["detail"]
    # reads from it are for CORS to answer, not refused here
    assert client.get("/x", headers={"Origin": "http://evil.example"}).status_code == 200


def test_writes_from_our_own_origin_a_cors_origin_or_no_browser_pass(client: TestClient) -> None:
    assert client.put("/x", headers={"Origin": "http://127.0.0.1:8000"}, content=b"{}").status_code == 200
    assert client.put("/x", headers={"Origin": "http://localhost:3000/"}, content=b"{}").status_code == 200
    assert client.put("/x", content=b"{}").status_code == 200
    # the same host on another port or scheme is another origin
    assert client.put("/x", headers={"Origin": "http://127.0.0.1:9999"}, content=b"{}").status_code == 403
    assert client.put("/x", headers={"Origin": "https://127.0.0.1:8000"}, content=b"{}").status_code == 403


def test_a_body_over_the_limit_is_refused_by_its_length(client: TestClient) -> None:
    assert client.put("/x", content=b"x" * LIMIT).json() == {"method": "PUT", "bytes": LIMIT}
    r = client.put("/x", content=b"x" * (LIMIT + 1))
    assert r.status_code == 413
    assert "1,024 bytes" in r.json()["detail"]


def test_a_streamed_body_is_cut_off_at_the_limit(client: TestClient) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(1_000):
            sent += 512
            yield b"y" * 512

    r = client.post("/x", content=chunks())
    assert r.status_code == 413


def test_a_non_numeric_length_is_a_bad_request(client: TestClient) -> None:
    r = client.put("/x", headers={"Content-Length": "12abc"}, content=b"{}")
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:80", "::1"), ("Example.COM", "example.com"), ("::1", "::1")],
)
def test_host_names(header: str, name: str) -> None:
    assert host_name(header) == name


def test_the_settings_serve_loopback_names_on_loopback_and_any_beyond() -> None:
    assert ApiSettings(host="127.0.0.1", allowed_hosts=["api"]).served_hosts() == [*LOOPBACK_HOSTS, "api"]
    assert ApiSettings(host="0.0.0.0").served_hosts() is None
    assert ApiSettings(host="0.0.0.0", allowed_hosts=["api"]).served_hosts() == ["api"]
