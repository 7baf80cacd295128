"""The web server with the real app and the real built-in markov model: REST, uploads, websocket streaming,
stop and disconnect cancelling work, the busy answer, and every bad input answered without a crash."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

MODEL = "builtin:markov"


def _have_model() -> bool:
    from orchestrion.composers import available_builtins

    return MODEL in available_builtins()


pytestmark = pytest.mark.skipif(not _have_model(), reason=f"{MODEL} is not shipped yet (src/orchestrion/builtin/markov)")


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from orchestrion.server import create_app

    with TestClient(create_app([MODEL], max_jobs=4)) as c:
        yield c


def request(**kw) -> dict:
    return {"model": MODEL, "bars": 8, "seed": 3, **kw}


def read_stream(ws) -> tuple[dict, list[dict], dict]:
    start = ws.receive_json()
    assert start["type"] == "start", start
    chunks = []
    while True:
        msg = ws.receive_json()
        if msg["type"] == "end":
            return start, chunks, msg
        assert msg["type"] == "measure", msg
        chunks.append(msg)


def wait_idle(client, timeout: float = 10.0) -> dict:
    """Health's job counters once no composition runs (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = client.get("/api/health").json()["jobs"]
        if jobs["active"] == 0 or time.monotonic() > deadline:
            return jobs
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------ REST


def test_health_and_models(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["models"] == [MODEL]
    listing = client.get("/api/models").json()
    (markov,) = listing["models"]
    assert markov["ref"] == MODEL and markov["kind"] == "markov"
    assert {"voices", "key", "tempo", "bars", "seed"} <= set(markov["fields"])
    assert markov["options"]["max_voices"] >= 1
    assert listing["limits"]["bars"] == {"min": 1, "max": 4096} and listing["limits"]["tempo"]["default"] == 120


def test_static_client_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas id=\"roll\"" in page.text
    assert client.get("/app.js").status_code == 200 and client.get("/style.css").status_code == 200


def test_compose_json_notes_are_deterministic(client):
    first = client.post("/api/compose", json=request(voices=[0, 1, 2])).json()
    again = client.post("/api/compose", json=request(voices=[0, 1, 2])).json()
    other = client.post("/api/compose", json=request(voices=[0, 1, 2], seed=4)).json()
    assert first["notes"] and first["notes"] == again["notes"] and first["notes"] != other["notes"]
    assert len(first["voices"]) == 3
    assert max(n["start"] for n in first["notes"]) < 32 and min(n["start"] for n in first["notes"]) >= 0
    assert first["provenance"]["request"]["seed"] == 3


def test_compose_midi_by_query_and_accept(client):
    from orchestrion.music import load_midi

    by_query = client.post("/api/compose?format=mid", json=request(voices=[0, 2]))
    by_accept = client.post("/api/compose", json=request(voices=[0, 2]), headers={"Accept": "audio/midi"})
    assert by_query.status_code == 200 and by_query.headers["content-type"] == "audio/midi"
    assert by_query.content == by_accept.content
    assert len(load_midi(by_query.content).tracks) == 2


def test_compose_wav_is_real_audio(client):
    import soundfile

    r = client.post("/api/compose?format=wav", json=request(bars=2))
    assert r.status_code == 200 and r.content[:4] == b"RIFF"
    audio, rate = soundfile.read(io.BytesIO(r.content))
    assert rate > 0 and float(np.sqrt(np.mean(np.square(audio)))) > 1e-3


def test_abc_of_a_markov_piece_is_refused_clearly(client):
    r = client.post("/api/compose?format=abc", json=request(bars=1))
    assert r.status_code == 406 and r.json()["field"] == "format"


BAD_REQUESTS = [
    ({"model": "builtin:nope"}, "model"),
    (request(bars=0), "bars"),
    (request(bars="many"), "bars"),
    (request(voices=[7]), "voices"),
    (request(voices=[]), "voices"),
    (request(programs=[200, 0, 0], voices=[0, 1, 2]), "programs"),
    (request(key="H major"), "key"),
    (request(tempo=1000), "tempo"),
    (request(temperature=0), "temperature"),
    (request(seed=-1), "seed"),
    (request(num_samples=3), "num_samples"),
    (request(colour="blue"), "colour"),
    (request(prompt="../../etc/passwd"), "prompt"),
    ([1, 2, 3], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS, ids=[f for _, f in BAD_REQUESTS])
def test_bad_requests_get_422_naming_the_field(client, body, field):
    r = client.post("/api/compose", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "error" and r.json()["field"] == field and r.json()["message"]


def test_malformed_json_and_unknown_format(client):
    r = client.post("/api/compose", content=b'{"model": "builtin:markov", "bars": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body" and "malformed JSON" in r.json()["message"]
    r = client.post("/api/compose?format=mp3", json=request())
    assert r.status_code == 422 and r.json()["field"] == "format"
    assert client.get("/api/pieces/0123456789abcdef").status_code == 404
    assert client.get("/api/health").json()["status"] == "ok"  # and the server is still up


# ---------------------------------------------------------------------------------------- prompts


def _midi_bytes(client) -> bytes:
    return client.post("/api/compose?format=mid", json=request(bars=2)).content


def test_prompt_uploads_are_checked_and_stored_by_id(client):
    import soundfile

    mid = client.post("/api/prompts", files={"file": ("tune.mid", _midi_bytes(client), "audio/midi")})
    assert mid.status_code == 201 and mid.json()["kind"] == "mid" and mid.json()["notes"] > 0
    abc = client.post("/api/prompts", files={"file": ("t.abc", b"X:1\nT:t\nM:4/4\nK:D\nDEFG|A4|\n", "text/plain")})
    assert abc.status_code == 201 and abc.json()["kind"] == "abc"
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(1600, dtype=np.float32), 16000, format="WAV")
    wav = client.post("/api/prompts", files={"file": ("p.wav", buf.getvalue(), "audio/wav")})
    assert wav.status_code == 201 and wav.json()["seconds"] == pytest.approx(0.1)

    prompt_id = mid.json()["id"]
    piece = client.post("/api/compose", json=request(bars=2, prompt=prompt_id)).json()
    assert piece["provenance"]["request"]["prompt"] == prompt_id  # the id, never the server's path
    hub = client.app.state.hub
    assert hub.prompts.path(prompt_id).parent == hub.prompts.directory


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("big.mid", b"MThd" + b"\0" * (2 * 2**20 + 10), 413),
        ("notes.pdf", b"%PDF-1.4", 415),
        ("noext", b"MThd", 415),
        ("broken.mid", b"MThd\x00\x00\x00\x06\x00\x01", 422),
        ("text.mid", b"hello, not midi", 422),
        ("empty.abc", b"", 422),
        ("nokey.abc", b"X:1\nT:no key line\n", 422),
        ("noise.wav", b"RIFF\x00\x00\x00\x00WAVEjunk", 422),
    ],
    ids=["oversized", "unknown-type", "no-suffix", "truncated-midi", "not-midi", "empty", "not-abc", "bad-wav"],
)
def test_bad_uploads(client, name, data, status):
    r = client.post("/api/prompts", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == status, r.text
    assert r.json()["field"] == "file" and r.json()["message"]


def test_upload_without_a_file(client):
    r = client.post("/api/prompts", data={"nothing": "here"})
    assert r.status_code == 422 and r.json()["field"] == "file"


# -------------------------------------------------------------------------------------- websocket


def test_stream_measures_then_end_and_download_the_same_piece(client):
    with client.websocket_connect("/stream") as ws:
        ws.send_json(request(voices=[0, 1, 2, 2]))
        start, measures, end = read_stream(ws)
    assert start["request"]["seed"] == 3
    assert [m["index"] for m in measures] == list(range(8))
    assert all(len(m["voices"]) == 4 for m in measures) and all(m["notes"] for m in measures)
    assert end["chunks"] == 8 and not end["stopped"]
    streamed = client.get(f"/api/pieces/{end['piece']}?format=mid").content
    composed = client.post("/api/compose?format=mid", json=request(voices=[0, 1, 2, 2])).content
    assert streamed[:4] == b"MThd" and streamed == composed  # same seed, same piece, streamed or not


def test_stream_bad_requests_answer_errors_and_keep_the_connection(client):
    with client.websocket_connect("/stream") as ws:
        ws.send_json(request(bars=0))
        assert ws.receive_json() == {"type": "error", "field": "bars", "message": ws_message(client, bars=0)}
        ws.send_text("{not json")
        err = ws.receive_json()
        assert err["type"] == "error" and err["field"] == "body"
        ws.send_json({"model": "builtin:nope"})
        assert ws.receive_json()["field"] == "model"
        ws.send_json({"type": "dance"})
        assert ws.receive_json()["field"] == "type"
        ws.send_json(request(bars=2))
        _, measures, _ = read_stream(ws)
        assert len(measures) == 2


def ws_message(client, **kw) -> str:
    return client.post("/api/compose", json=request(**kw)).json()["message"]


def test_stop_ends_the_piece_early(client):
    with client.websocket_connect("/stream") as ws:
        ws.send_json(request(bars=4096))
        assert ws.receive_json()["type"] == "start"
        assert ws.receive_json()["type"] == "measure"
        ws.send_json({"type": "stop"})
        while (msg := ws.receive_json())["type"] == "measure":
            pass
        assert msg["type"] == "end" and msg["stopped"] and msg["chunks"] < 4096


def test_closed_connection_cancels_its_composition(client):
    before = wait_idle(client)
    with client.websocket_connect("/stream") as ws:
        ws.send_json(request(bars=4096))
        ws.receive_json()
        ws.receive_json()
    after = wait_idle(client)
    assert after["active"] == 0
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["chunks"] - before["chunks"] < 4096  # it stopped composing when the client left
    time.sleep(0.2)
    assert client.get("/api/health").json()["jobs"]["chunks"] == after["chunks"]  # and nothing runs on


def test_busy_past_the_job_limit():
    from fastapi.testclient import TestClient

    from orchestrion.server import create_app

    with TestClient(create_app([MODEL], max_jobs=1)) as c, c.websocket_connect("/stream") as first:
        first.send_json(request(bars=4096))
        assert first.receive_json()["type"] == "start"
        with c.websocket_connect("/stream") as second:
            second.send_json(request())
            busy = second.receive_json()
        assert busy["type"] == "error" and busy["busy"] and "busy" in busy["message"]
        r = c.post("/api/compose", json=request())
        assert r.status_code == 503 and r.json()["busy"]
        first.send_json({"type": "stop"})
        while first.receive_json()["type"] != "end":
            pass
        assert c.post("/api/compose", json=request(bars=1)).status_code == 200  # the slot is free again
