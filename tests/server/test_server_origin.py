"""Other sites cannot drive the server: every state-changing request from a foreign origin is refused.

A page on any site can post a form or a text/plain body to 127.0.0.1 and open a websocket to it without a
CORS preflight; these tests send exactly what such a page's browser would send.
"""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

MODEL = "builtin:markov"
EVIL = "http://evil.example"
BODY = '{"model": "builtin:markov", "bars": 1, "seed": 1}'


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from orchestrion.server.app import create_app

    # base_url on the loopback address: the server's socket is what a real `orchestrion serve` binds.
    with TestClient(create_app([MODEL], max_jobs=4), base_url="http://127.0.0.1:8000") as c:
        yield c


def pieces(client) -> int:
    return client.get("/api/health").json()["pieces"]


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": EVIL, "content-type": "application/json"},
        {"origin": "null", "content-type": "application/json"},
        {"origin": "http://127.0.0.1:9999", "content-type": "application/json"},  # another port is another site
        {"sec-fetch-site": "cross-site", "content-type": "application/json"},
        {"sec-fetch-site": "same-site", "content-type": "application/json"},
        {"origin": EVIL, "content-type": "text/plain"},
    ],
    ids=["origin", "null-origin", "other-port", "fetch-cross-site", "fetch-same-site", "text-plain"],
)
def test_a_foreign_compose_is_refused_and_composes_nothing(client, headers):
    before = pieces(client)
    r = client.post("/api/compose", content=BODY, headers=headers)
    assert r.status_code == 403 and r.json()["field"] == "origin", r.text
    assert "access-control-allow-origin" not in r.headers
    assert pieces(client) == before


def test_json_must_say_it_is_json(client):
    # No Origin at all (an old browser, or a form that hides it): a text/plain "JSON" body is still refused.
    r = client.post("/api/compose", content=BODY, headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["field"] == "body"
    r = client.post("/api/compose", content=BODY, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


def test_a_foreign_form_upload_is_refused_and_stores_nothing(client):
    files = {"file": ("t.abc", b"X:1\nT:t\nK:C\nCDEF|\n", "text/plain")}
    r = client.post("/api/prompts", files=files, headers={"origin": EVIL})
    assert r.status_code == 403
    r = client.post("/api/prompts", files=files, headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403


def test_the_apps_own_page_and_scripts_are_served(client):
    own = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin", "content-type": "application/json"}
    assert client.post("/api/compose", content=BODY, headers=own).status_code == 200
    assert client.post("/api/compose", json={"model": MODEL, "bars": 1, "seed": 1}).status_code == 200  # a script
    r = client.post(
        "/api/compose", content=BODY, headers={"sec-fetch-site": "none", "content-type": "application/json"}
    )
    assert r.status_code == 200  # typed into the address bar, a bookmark


def test_a_piece_as_prompt_is_state_changing_too(client):
    piece = client.post("/api/compose", json={"model": MODEL, "bars": 1, "seed": 2}).json()["id"]
    assert client.post(f"/api/pieces/{piece}/prompt", headers={"origin": EVIL}).status_code == 403
    assert client.post(f"/api/pieces/{piece}/prompt").status_code == 201


def test_dns_rebinding_host_names_are_refused_on_loopback(client):
    # evil.example resolved to 127.0.0.1: the page is same-origin with itself, so its Host header gives it away.
    r = client.get("/api/health", headers={"host": "evil.example:8000"})
    assert r.status_code == 403
    r = client.post(
        "/api/compose",
        json={"model": MODEL, "bars": 1},
        headers={"host": "evil.example:8000", "origin": "http://evil.example:8000"},
    )
    assert r.status_code == 403
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000"):
        assert client.get("/api/health", headers={"host": host}).status_code == 200


def test_foreign_websockets_are_closed(client):
    for headers in ({"origin": EVIL}, {"origin": "null"}, {"sec-fetch-site": "cross-site"}):
        with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/stream", headers=headers) as ws:
            ws.receive_json()
        assert info.value.code == 1008
    with client.websocket_connect("ws://127.0.0.1:8000/stream", headers={"origin": "http://127.0.0.1:8000"}) as ws:
        ws.send_json({"model": MODEL, "bars": 1, "seed": 1})
        assert ws.receive_json()["type"] == "start"


def test_no_cors_preflight_is_granted(client):
    r = client.options(
        "/api/compose",
        headers={
            "origin": EVIL,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in r.headers
