"""The pieces the server keeps: the history, links to a piece, seeking in its WAV (HTTP ranges), a piece as a
new prompt; uploads checked against the model; no server path in any message; the API docs offline; and each
model's defaults, as the page shows them, accepted by the model."""

from __future__ import annotations

import re

import pytest

from orchestrion.registry import available_builtins

MODEL = "builtin:markov"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from orchestrion.server.app import create_app

    data = tmp_path_factory.mktemp("data")
    with TestClient(create_app([MODEL], max_jobs=4, data_dir=data, max_pieces=6)) as c:
        yield c


def compose(client, **kw) -> str:
    r = client.post("/api/compose", json={"model": MODEL, "bars": 2, "seed": 1, **kw})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_the_history_lists_the_pieces_kept_newest_first(client):
    ids = [compose(client, seed=s) for s in range(1, 9)]
    listed = client.get("/api/pieces").json()["pieces"]
    assert [p["id"] for p in listed] == ids[::-1][:6]  # max_pieces=6: the oldest went
    first = listed[0]
    assert first["model"] == MODEL and first["seed"] == 8 and first["measures"] == 2
    assert first["request"]["bars"] == 2 and set(first["formats"]) == {"mid"}
    assert first["voices"] and first["kind"] == "notes" and first["created"] > 0


def test_a_piece_has_a_link_that_opens_the_page(client):
    piece = compose(client)
    r = client.get(f"/piece/{piece}")
    assert r.status_code == 200 and "<main" in r.text and "/app.js" in r.text
    assert client.get("/piece/../../etc/passwd").status_code == 404
    assert client.get("/piece/not-an-id").status_code == 404
    body = client.get(f"/api/pieces/{piece}", params={"format": "json"}).json()
    assert body["summary"]["id"] == piece and body["notes"]


def test_wav_downloads_answer_ranges_so_players_can_seek(client):
    piece = compose(client, bars=4)
    whole = client.get(f"/api/pieces/{piece}", params={"format": "wav"})
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    data = whole.content
    r = client.get(f"/api/pieces/{piece}?format=wav", headers={"range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    r = client.get(f"/api/pieces/{piece}?format=wav", headers={"range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == data[1000:]
    r = client.get(f"/api/pieces/{piece}?format=wav", headers={"range": "bytes=-44"})
    assert r.status_code == 206 and r.content == data[-44:]
    r = client.get(f"/api/pieces/{piece}?format=wav", headers={"range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"


def test_a_piece_becomes_a_prompt_of_its_kind(client):
    piece = compose(client)
    r = client.post(f"/api/pieces/{piece}/prompt")
    assert r.status_code == 201 and r.json()["kind"] == "mid"
    assert re.fullmatch(r"[0-9a-f]{16}", r.json()["id"])
    assert client.post("/api/pieces/0123456789abcdef/prompt").status_code == 404


def test_an_upload_is_checked_against_the_model_it_is_for(client, fixtures_dir):
    midi = sorted(fixtures_dir.glob("*.mid"))[0].read_bytes()
    r = client.post("/api/prompts", params={"model": MODEL}, files={"file": ("p.mid", midi, "audio/midi")})
    assert r.status_code == 422 and r.json()["field"] == "file"
    assert "builtin:markov takes no prompt" in r.json()["message"]
    r = client.post("/api/prompts", params={"model": "builtin:nope"}, files={"file": ("p.mid", midi, "audio/midi")})
    assert r.status_code == 422 and r.json()["field"] == "model"


def test_a_one_line_variations_of_is_not_read_as_a_file(client):
    r = client.post("/api/compose", json={"model": MODEL, "variations_of": "/etc/hostname"})
    assert r.status_code == 422 and r.json()["field"] == "variations_of"


def test_messages_name_no_server_path():
    from orchestrion.errors import BadInput
    from orchestrion.server.state import scrub

    err = BadInput("not a MIDI file", "/tmp/orchestrion-server-x/prompts/0123456789abcdef.mid")
    assert "/tmp" not in scrub(str(err)) and "0123456789abcdef.mid" in scrub(str(err))
    assert scrub("write the meter like 6/8, C or C|") == "write the meter like 6/8, C or C|"


def test_the_api_reference_is_served_from_the_apps_own_files(client):
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") for s in sources), sources  # nothing from another host
    for src in sources:
        assert client.get(src).status_code == 200, src
    assert client.get("/redoc").status_code == 404  # it would load its script from a CDN


@pytest.mark.parametrize("ref", available_builtins())
def test_each_models_page_defaults_make_a_request_it_accepts(ref):
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest
    from orchestrion.server.catalog import describe
    from orchestrion.server.routes_api import request_limits

    composer = load_composer(ref)
    view = describe(ref, composer, "", request_limits(ComposeRequest.model_json_schema()))
    request = {k: v for k, v in view["defaults"].items() if k in view["fields"]}
    composer.validate(ComposeRequest(model=ref, **request))  # raises if the page's first Generate would fail
    assert "seed" in view["fields"]
    if "bars" in view["fields"]:
        assert view["defaults"]["bars"] <= view["limits"]["bars"]["max"]
    for name in ("temperature", "top_p", "top_k"):
        if name in view["fields"]:
            assert view["help"][name]


def test_a_markov_score_has_a_title_of_its_own(client):
    piece = compose(client, bars=2, seed=4)
    svg = client.get(f"/api/pieces/{piece}", params={"format": "svg"}).text
    assert "Music21 Fragment" not in svg
    assert "Markov piece" in svg or "seed 4" in svg


def test_an_audio_piece_carries_the_detectors_verdict(tmp_path):
    """builtin:piano makes noise today: the server's summary says so (never a bare "valid")."""
    from fastapi.testclient import TestClient

    from orchestrion.server.app import create_app

    with TestClient(create_app(["builtin:piano"], max_jobs=2, data_dir=tmp_path)) as c:
        r = c.post("/api/compose", json={"model": "builtin:piano", "seconds": 1.0, "seed": 1})
        assert r.status_code == 200, r.text
        (listed,) = c.get("/api/pieces").json()["pieces"]
    verdict = listed["verdict"]
    assert verdict["label"] == "noise" and "flatness" in verdict["reason"]
