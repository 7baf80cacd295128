"""The web server with the real app and the real built-in markov model: REST, uploads, websocket streaming,
stop and disconnect cancelling work, the busy answer, and every bad input answered without a crash."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

MODEL = "builtin:markov"


def _have_model() -> bool:
    from orchestrion.registry import available_builtins

    return MODEL in available_builtins()


pytestmark = pytest.mark.skipif(
    not _have_model(), reason=f"{MODEL} is not shipped yet (src/orchestrion/builtin/markov)"
)


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from orchestrion.server.app import create_app

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
    assert page.status_code == 200 and '<canvas id="roll"' in page.text
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
    from orchestrion.core.music import load_midi

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


def test_compose_svg_score(client):
    r = client.post("/api/compose", json=request(bars=2), headers={"Accept": "image/svg+xml"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert r.text.lstrip().startswith("<svg") and r.text.count("<g") > 10  # verovio drew staves and notes


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
    r = client.post(
        "/api/compose", content=b'{"model": "builtin:markov", "bars": ', headers={"content-type": "application/json"}
    )
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
    hub = client.app.state.hub
    stored = hub.prompts.path(prompt_id)
    assert stored.parent == hub.prompts.directory and stored.read_bytes()[:4] == b"MThd"
    # markov takes no prompt: the id resolves, and the composer's own answer names the field.
    r = client.post("/api/compose", json=request(bars=2, prompt=prompt_id))
    assert r.status_code == 422 and r.json()["field"] == "prompt"
    assert str(hub.prompts.directory) not in r.text


def test_provenance_shows_the_prompt_id_not_the_server_path():
    from orchestrion.composer import Piece
    from orchestrion.server.formats import public_provenance

    piece = Piece(provenance={"model": MODEL, "request": {"prompt": "/srv/prompts/0123456789abcdef.mid", "bars": 2}})
    assert public_provenance(piece)["request"] == {"prompt": "0123456789abcdef", "bars": 2}


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


def test_bodies_over_the_limit_are_refused_before_reading(client):
    # The guard answers from the Content-Length alone, in plain text, before any of the body is read.
    r = client.post(
        "/api/compose",
        content=b'{"title": "' + b"x" * (2 * 2**20) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and "Too Large" in r.text
    r = client.post("/api/prompts", files={"file": ("huge.wav", b"\0" * (17 * 2**20), "audio/wav")})
    assert r.status_code == 413 and "Too Large" in r.text


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
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_json()["field"] == "body"
        ws.send_json({"type": "stop"})  # nothing to stop: ignored
        ws.send_json(request(bars=2))
        _, measures, _ = read_stream(ws)
        assert len(measures) == 2


def ws_message(client, **kw) -> str:
    return client.post("/api/compose", json=request(**kw)).json()["message"]


def test_cross_origin_websockets_are_refused(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/stream", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()
    assert refused.value.code == 1008
    with client.websocket_connect("/stream", headers={"origin": "http://testserver"}) as ws:
        ws.send_json(request(bars=1))
        assert len(read_stream(ws)[1]) == 1


def test_prompt_store_keeps_a_bounded_number_of_files(tmp_path):
    from orchestrion.server.errors import ApiError
    from orchestrion.server.stores import PromptStore

    store = PromptStore(tmp_path, capacity=2)
    ids = [store.add(b"MThd", ".mid") for _ in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.mid" for i in ids[2:])
    with pytest.raises(ApiError):
        store.path(ids[0])


def test_stop_ends_the_piece_early(client):
    with client.websocket_connect("/stream") as ws:
        ws.send_json(request(bars=4096))
        assert ws.receive_json()["type"] == "start"
        assert ws.receive_json()["type"] == "measure"
        ws.send_json({"type": "stop"})
        while (msg := ws.receive_json())["type"] == "measure":
            pass
        assert msg["type"] == "end" and msg["stopped"] and msg["chunks"] < 4096


def test_lead_keeps_composing_just_ahead_of_playback(client):
    with client.websocket_connect("/stream") as ws:
        ws.send_json({**request(bars=4096, tempo=400), "lead": 1})  # 0.6 s per measure, 1 s ahead at most
        assert ws.receive_json()["type"] == "start"
        assert ws.receive_json()["index"] == 0
        ws.send_json({"type": "stop"})
        while (msg := ws.receive_json())["type"] == "measure":
            pass
        # Unpaced, thousands of measures are made in the same time (see test_stop_ends_the_piece_early).
        assert msg["type"] == "end" and msg["stopped"] and msg["chunks"] <= 10, msg
        for bad in (-1, 0, "soon", True, 10_000):
            ws.send_json({**request(), "lead": bad})
            assert ws.receive_json()["field"] == "lead"


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

    from orchestrion.server.app import create_app

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


# ------------------------------------------------------------------------------- a real uvicorn server


@pytest.fixture(scope="module")
def live_server():
    """The app under uvicorn in a thread, on a free loopback port: real websocket close frames."""
    import socket
    import threading

    import uvicorn

    from orchestrion.server.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app([MODEL]), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_client_that_leaves_stops_its_composition_under_uvicorn(live_server):
    import httpx
    from websockets.sync.client import connect

    def jobs() -> dict:
        return httpx.get(f"http://{live_server}/api/health", timeout=5).json()["jobs"]

    with connect(f"ws://{live_server}/stream") as ws:
        ws.send(json.dumps(request(bars=4096)))
        assert '"start"' in ws.recv(timeout=10) and '"measure"' in ws.recv(timeout=10)
    deadline = time.monotonic() + 10
    while (after := jobs())["active"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert after["active"] == 0 and after["cancelled"] == 1 and after["chunks"] < 4096
    time.sleep(0.2)
    assert jobs()["chunks"] == after["chunks"]  # no work goes on for the client that left


def test_piece_store_keeps_the_newest_within_its_bounds():
    from orchestrion.composer import Piece
    from orchestrion.server.errors import ApiError
    from orchestrion.server.stores import PieceStore

    store = PieceStore(capacity=3, max_bytes=10_000_000)
    ids = [store.add(Piece(provenance={}, abc="X:1\nK:C\nC|")) for _ in range(5)]
    assert store.get(ids[-1]).abc and store.get(ids[2]).abc
    with pytest.raises(ApiError):
        store.get(ids[1])
    big = [store.add(Piece(provenance={}, audio=np.zeros(1_000_000, dtype=np.float32))) for _ in range(3)]  # 4 MB each
    assert store.get(big[-1]).audio is not None and store.get(big[-2]).audio is not None
    with pytest.raises(ApiError):
        store.get(big[0])


# ------------------------------------------------------------------ formats of ABC and audio pieces


def test_formats_of_an_abc_piece(fixtures_dir):
    from orchestrion.composer import Piece
    from orchestrion.core.music import load_midi
    from orchestrion.server.formats import piece_json, render_piece

    piece = Piece(provenance={"request": {}}, abc=(fixtures_dir / "tune.abc").read_text())
    assert render_piece(piece, "abc").decode() == piece.abc
    assert load_midi(render_piece(piece, "mid")).tracks  # through abc2midi
    assert render_piece(piece, "svg").lstrip().startswith(b"<svg")  # through verovio
    assert render_piece(piece, "wav")[:4] == b"RIFF"  # abc2midi, then FluidSynth
    assert piece_json(piece)["abc"] == piece.abc
    # The server engraves on worker threads: each fresh thread must find verovio's fonts too.
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(2):
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(render_piece, piece, "svg").result().lstrip().startswith(b"<svg")


def test_formats_of_an_audio_piece():
    import soundfile

    from orchestrion.composer import Piece
    from orchestrion.server.errors import ApiError
    from orchestrion.server.formats import piece_json, render_piece

    tone = (0.5 * np.sin(np.arange(8000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    piece = Piece(provenance={"request": {}}, audio=tone, sample_rate=16000)
    audio, rate = soundfile.read(io.BytesIO(render_piece(piece, "wav")))
    assert rate == 16000 and len(audio) == 8000
    assert piece_json(piece)["audio"] == {"sample_rate": 16000, "samples": 8000}
    for fmt in ("mid", "abc", "svg"):
        with pytest.raises(ApiError) as err:
            render_piece(piece, fmt)
        assert err.value.status == 406


def test_midi_downloads_share_channels_only_within_an_instrument_family():
    """The server writes MIDI as the CLI does: 16 melodic programs need 16 channels but only 15 are not drums,
    so two must share one: programs of one General MIDI family (symusic alone paired strings with an orchestra
    hit on channel 1)."""
    from orchestrion.composer import Piece
    from orchestrion.core.midifile import read_tracks
    from orchestrion.server.formats import render_piece
    from orchestrion.testing import real_world

    score = real_world.many_tracks(16)
    _, tracks, _ = read_tracks(render_piece(Piece(provenance={"request": {}}, score=score), "mid"))
    programs: dict[int, set[int]] = {}
    for events in tracks:
        for channel in {e.status & 0x0F for e in events if e.is_channel}:
            programs.setdefault(channel, set()).update(e.data[1] for e in events if e.status & 0xF0 == 0xC0)
    assert 9 not in programs and len(programs) == 15
    (shared,) = [p for p in programs.values() if len(p) > 1]
    assert len({program // 8 for program in shared}) == 1, shared
