"""What a hostile client can send the server: paths and traversal tricks in every id, name and model,
oversized and endless bodies, uploads of the wrong size, length or type. Each is refused with a 4xx, and
a sentinel file outside the server's directories is never opened (an audit hook watches every open)."""

from __future__ import annotations

import io
import os
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

MODEL = "builtin:markov"
SENTINEL = "orchestrion-sentinel-never-served"


def _have_model() -> bool:
    from orchestrion.registry import available_builtins

    return MODEL in available_builtins()


pytestmark = pytest.mark.skipif(not _have_model(), reason=f"{MODEL} is not shipped yet")

# ------------------------------------------------------------------------------ file system watch

_touched: list[str] | None = None  # paths opened, listed or removed while a test records them


def _audit(event: str, args: tuple) -> None:
    if _touched is not None and event in ("open", "os.listdir", "os.scandir", "os.remove", "os.rename", "os.mkdir"):
        path = args[0] if args else None
        if isinstance(path, str | bytes | os.PathLike):
            _touched.append(os.fsdecode(path))


sys.addaudithook(_audit)  # hooks cannot be removed; this one does nothing unless a test records


class Watch:
    def __enter__(self) -> list[str]:
        global _touched
        _touched = []
        return _touched

    def __exit__(self, *exc: object) -> None:
        global _touched
        _touched = None


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from fastapi.testclient import TestClient

    from orchestrion.server.app import create_app

    root = tmp_path_factory.mktemp("security")
    outside = root / "outside"
    outside.mkdir()
    secret = outside / "passwd"
    secret.write_text(SENTINEL)
    (outside / "passwd.mid").write_text(SENTINEL)
    data = root / "data"
    with TestClient(create_app([MODEL], max_jobs=4, data_dir=data)) as client:
        yield client, secret, data


def traversals(secret: Path, data: Path) -> list[str]:
    """Names that would reach the sentinel if anything joined them to one of the server's directories."""
    from orchestrion.server.app import STATIC_DIR

    names = []
    for base in (STATIC_DIR, data / "pieces", data / "prompts", data):
        rel = os.path.relpath(secret, base)
        names += [rel, rel.replace("/", "\\"), quote(rel, safe=""), rel.replace(".", "%2e").replace("/", "%2f")]
    return [*names, str(secret), "../../etc/passwd", "..", "./", "a\x00b", "%00", "0" * 16 + "\x00", "a" * 4096]


def assert_untouched(touched: list[str], secret: Path) -> None:
    outside = str(secret.parent)
    hits = [p for p in touched if outside in os.path.abspath(p) or "etc/passwd" in p or "\x00" in p]
    assert not hits, hits


# ------------------------------------------------------------------------------------ traversal


def test_piece_ids_never_become_paths(env):
    client, secret, data = env
    with Watch() as touched:
        for name in traversals(secret, data):
            for fmt in ("mid", "json"):
                r = client.get(f"/api/pieces/{quote(name, safe='%')}?format={fmt}")
                assert 400 <= r.status_code < 500 and SENTINEL not in r.text, (name, r.status_code)
    assert_untouched(touched, secret)


def test_static_files_stay_in_the_static_directory(env):
    from orchestrion.server.app import STATIC_DIR

    client, secret, data = env
    static_files = {p.read_bytes() for p in STATIC_DIR.rglob("*") if p.is_file()}
    with Watch() as touched:
        for name in traversals(secret, data):
            for url in (f"/{quote(name, safe='%/')}", f"/{quote(name, safe='%')}", f"/static/{quote(name, safe='%/')}"):
                r = client.get(url)
                assert SENTINEL not in r.text, url
                # "/.." and "/./" are "/" once the client normalises them: the app's own page, nothing else.
                assert 400 <= r.status_code < 500 or r.content in static_files, (url, r.status_code)
        assert client.get("/app.js").status_code == 200  # the real files still are served
    assert any(p.endswith("app.js") for p in touched)  # (and the watch does see what is opened)
    assert_untouched(touched, secret)


def test_formats_are_a_fixed_list(env):
    client, secret, data = env
    piece_id = client.post("/api/compose", json={"model": MODEL, "bars": 1, "seed": 1}).json()["id"]
    with Watch() as touched:
        for name in traversals(secret, data):
            r = client.get(f"/api/pieces/{piece_id}", params={"format": name})
            assert r.status_code == 422 and r.json()["field"] == "format" and SENTINEL not in r.text
    assert_untouched(touched, secret)


def test_models_are_only_the_served_ones(env, tmp_path):
    client, secret, data = env
    # A loadable model directory on disk is still not a served model.
    import shutil

    import orchestrion

    trained = tmp_path / "trained"
    shutil.copytree(Path(orchestrion.__file__).parent / "builtin" / "markov", trained)
    names = [
        *traversals(secret, data),
        "builtin:../x",
        "builtin:../../etc/passwd",
        str(trained),
        "builtin:" + str(secret),
    ]
    with Watch() as touched:
        for name in names:
            r = client.post("/api/compose", json={"model": name, "bars": 1})
            assert r.status_code == 422 and r.json()["field"] == "model" and SENTINEL not in r.text, name
            assert len(r.json()["message"]) < 400  # a 4 kB name is not echoed back whole
            with client.websocket_connect("/stream") as ws:
                ws.send_json({"model": name, "bars": 1})
                assert ws.receive_json()["field"] == "model"
    assert_untouched(touched, secret)


def test_prompt_ids_never_become_paths(env):
    client, secret, data = env
    with Watch() as touched:
        for name in [*traversals(secret, data), str(secret.with_suffix(".mid")), 123, ["x"], {"path": "x"}]:
            r = client.post("/api/compose", json={"model": MODEL, "bars": 1, "prompt": name})
            assert r.status_code == 422 and r.json()["field"] == "prompt" and SENTINEL not in r.text, name
            assert str(data) not in r.text
            with client.websocket_connect("/stream") as ws:
                ws.send_json({"model": MODEL, "bars": 1, "prompt": name})
                assert ws.receive_json()["field"] == "prompt"
    assert_untouched(touched, secret)


def test_upload_names_never_become_paths(env):
    client, secret, data = env
    abc = b"X:1\nT:t\nK:C\nCDEF|\n"
    before = sorted(p.name for p in secret.parent.iterdir())
    with Watch() as touched:
        for name in ["../outside/passwd.abc", "/abs/x.abc", quote(os.path.relpath(secret, data / "prompts")) + ".abc"]:
            r = client.post("/api/prompts", files={"file": (name, abc, "text/plain")})
            assert r.status_code == 201, r.text
            stored = client.app.state.hub.prompts.path(r.json()["id"])
            assert stored.parent == data / "prompts" and stored.read_bytes() == abc
    assert sorted(p.name for p in secret.parent.iterdir()) == before and secret.read_text() == SENTINEL
    assert_untouched(touched, secret)


# ---------------------------------------------------------------------------------- size caps


def test_uploads_one_byte_over_their_cap_are_refused(env):
    from orchestrion.server.routes_api import MAX_UPLOAD_BYTES

    client, _, _ = env
    for suffix, limit in MAX_UPLOAD_BYTES.items():
        r = client.post(
            "/api/prompts", files={"file": (f"big{suffix}", b"\0" * (limit + 1), "application/octet-stream")}
        )
        assert r.status_code == 413 and r.json()["field"] == "file" and "limit" in r.json()["message"], suffix
    limit = MAX_UPLOAD_BYTES[".abc"]
    tune = b"X:1\nT:t\nK:C\n"
    at_cap = tune + b"C" * (limit - len(tune) - 1) + b"\n"
    assert len(at_cap) == limit
    assert client.post("/api/prompts", files={"file": ("cap.abc", at_cap, "text/plain")}).status_code == 201


def _wav(seconds: float, rate: int = 8000) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(int(seconds * rate), dtype=np.int16), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_wav_prompts_have_a_length_cap(env):
    from orchestrion.server.routes_api import MAX_PROMPT_SECONDS

    client, _, _ = env
    r = client.post("/api/prompts", files={"file": ("long.wav", _wav(MAX_PROMPT_SECONDS + 1), "audio/wav")})
    assert r.status_code == 422 and r.json()["field"] == "file"
    assert f"{MAX_PROMPT_SECONDS + 1:.1f} s long" in r.json()["message"] and "at most" in r.json()["message"]
    ok = client.post("/api/prompts", files={"file": ("ok.wav", _wav(MAX_PROMPT_SECONDS - 1), "audio/wav")})
    assert ok.status_code == 201 and ok.json()["seconds"] == pytest.approx(MAX_PROMPT_SECONDS - 1)
    assert client.get("/api/models").json()["upload_max_seconds"] == MAX_PROMPT_SECONDS


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("tool.exe", b"MZ\x90\x00", 415),
        ("tune.mid.exe", b"MThd", 415),
        ("page.html", b"<html>", 415),
        ("tune.mid", b"%PDF-1.4 not midi", 422),
        ("tune.wav", b"MThd\x00\x00\x00\x06", 422),
        ("tune.abc", "X:1\nK:C\n".encode("utf-16"), 422),
    ],
    ids=["exe", "double-suffix", "html", "pdf-as-midi", "midi-as-wav", "utf16-abc"],
)
def test_uploads_of_the_wrong_type_are_refused(env, name, data, status):
    client, _, _ = env
    r = client.post("/api/prompts", files={"file": (name, data, "audio/midi")})
    assert r.status_code == status and r.json()["field"] == "file", r.text


def test_json_bodies_have_a_cap(env):
    from orchestrion.server.state import MAX_JSON_BYTES

    client, _, _ = env
    pad = MAX_JSON_BYTES - len(b'{"model": "builtin:markov", "bars": 1, "title": ""}') + 1
    body = b'{"model": "builtin:markov", "bars": 1, "title": "' + b"x" * pad + b'"}'
    assert len(body) == MAX_JSON_BYTES + 1
    r = client.post("/api/compose", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    with client.websocket_connect("/stream") as ws:
        ws.send_text(body.decode())
        err = ws.receive_json()
        assert err["type"] == "error" and err["field"] == "body" and "at most" in err["message"]
        ws.send_json({"model": MODEL, "bars": 1, "seed": 1})  # and the connection still works
        assert ws.receive_json()["type"] == "start"


def test_a_compose_request_naming_a_huge_piece_is_refused_by_its_limits(env):
    client, _, _ = env
    r = client.post("/api/compose", json={"model": MODEL, "bars": 10**9})
    assert r.status_code == 422 and r.json()["field"] == "bars"


# ------------------------------------------------------------------- endless bodies, real server


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The app under uvicorn in a thread on a free loopback port: real sockets, real chunked bodies."""
    import uvicorn

    from orchestrion.server.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app([MODEL], data_dir=tmp_path_factory.mktemp("live"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def send_endless(
    port: int, path: str, content_type: str, prefix: bytes = b"", total: int = 100 * 2**20
) -> tuple[int, bytes]:
    """POST a chunked body of `total` bytes (no Content-Length), stopping once the server answers.

    Returns how many body bytes went out before the answer and the answer's first bytes.
    """
    import select

    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    block = b"a" * (64 * 2**10)
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        if prefix:
            sock.sendall(f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n")
        deadline = time.monotonic() + 60
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable:
                break
            if writable:
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(block)
        sock.settimeout(10)
        try:
            answer = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    return sent, answer


def test_an_endless_json_body_is_refused_without_reading_it(live):
    sent, answer = send_endless(live, "/api/compose", "application/json")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # 1 MiB is read; what else went out sits in the sockets' buffers, never in the server's memory.
    assert sent < 24 * 2**20, sent


def test_an_endless_upload_is_refused_without_reading_it(live):
    part = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    )
    sent, answer = send_endless(live, "/api/prompts", "multipart/form-data; boundary=xyz", prefix=part)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # The route's cap (16 MiB for WAV, plus the form's framing) is read; the rest of 100 MB is never sent.
    assert sent < 40 * 2**20, sent
    import httpx

    assert httpx.get(f"http://127.0.0.1:{live}/api/health", timeout=5).json()["status"] == "ok"


def test_serve_binds_loopback_by_default():
    import inspect

    from orchestrion.cli import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    docs = (Path(__file__).parents[2] / "docs" / "serve.md").read_text()
    assert "binds 127.0.0.1 by default" in docs
