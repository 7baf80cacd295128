"""A server killed and started again loses no piece it reported: `orchestrion serve --data-dir` as a real
process, SIGKILLed between and during compositions, then restarted on the same directory; and the piece
store's recovery from what a crash can leave on disk (temporary files, data without a record, a short file)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

MODEL = "builtin:markov"


def _have_model() -> bool:
    from orchestrion.registry import available_builtins

    return MODEL in available_builtins()


pytestmark = pytest.mark.skipif(not _have_model(), reason=f"{MODEL} is not shipped yet")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`orchestrion serve` in a subprocess on a free loopback port, with its stderr in a file."""

    def __init__(self, data_dir: Path, log: Path):
        import httpx

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("orchestrion")
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [str(exe), "serve", "--port", str(self.port), "-m", MODEL, "--data-dir", str(data_dir)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"the server exited: {log.read_text(errors='replace')}"
            try:
                if httpx.get(f"{self.base}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def servers(tmp_path):
    started: list[Server] = []

    def start() -> Server:
        started.append(Server(tmp_path / "data", tmp_path / "server.log"))
        return started[-1]

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.kill()


def stream_piece(base: str, **request) -> str:
    from websockets.sync.client import connect

    with connect(base.replace("http", "ws") + "/stream", open_timeout=10) as ws:
        ws.send(json.dumps({"model": MODEL, **request}))
        while (msg := json.loads(ws.recv(timeout=30)))["type"] != "end":
            assert msg["type"] in ("start", "measure"), msg
    return msg["piece"]


def test_reported_pieces_survive_sigkill_and_restart(servers, tmp_path):
    import httpx

    server = servers()
    reported: dict[str, dict[str, bytes]] = {}  # piece id -> format -> the bytes the client got
    for seed in (1, 2):
        r = httpx.post(f"{server.base}/api/compose?format=mid", json={"model": MODEL, "bars": 8, "seed": seed})
        assert r.status_code == 200 and r.content[:4] == b"MThd"
        reported[r.headers["x-piece-id"]] = {"mid": r.content}
    r = httpx.post(f"{server.base}/api/compose", json={"model": MODEL, "bars": 4, "seed": 5, "voices": [0, 2]})
    reported[r.json()["id"]] = {"json": r.content}
    streamed = stream_piece(server.base, bars=4, seed=7)
    reported[streamed] = {}
    for piece_id, seen in reported.items():
        for fmt in ("mid", "json"):
            got = httpx.get(f"{server.base}/api/pieces/{piece_id}?format={fmt}")
            assert got.status_code == 200
            assert seen.setdefault(fmt, got.content) == got.content  # the POST answer is what GET serves

    # Kill it while pieces are being composed and written: one stream is mid-piece, a client keeps posting.
    from websockets.sync.client import connect

    ws = connect(server.base.replace("http", "ws") + "/stream", open_timeout=10)
    ws.send(json.dumps({"model": MODEL, "bars": 4096, "tempo": 400, "seed": 9, "lead": 1}))
    assert json.loads(ws.recv(timeout=10))["type"] == "start"
    assert json.loads(ws.recv(timeout=10))["type"] == "measure"
    during: dict[str, bytes] = {}
    stop = threading.Event()

    def keep_posting() -> None:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            seed = 100
            while not stop.is_set():
                try:
                    r = client.post("/api/compose?format=mid", json={"model": MODEL, "bars": 64, "seed": seed})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    during[r.headers["x-piece-id"]] = r.content
                seed += 1

    poster = threading.Thread(target=keep_posting)
    poster.start()
    deadline = time.monotonic() + 20
    while len(during) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    stop.set()
    poster.join(timeout=20)
    ws.close()
    assert during, "no piece was composed while the server ran"

    (tmp_path / "data" / "pieces" / ".0123456789abcdef.mid.dead.tmp").write_bytes(b"MThd\0")  # a write cut short
    again = servers()
    for piece_id, seen in reported.items():
        for fmt, data in seen.items():
            got = httpx.get(f"{again.base}/api/pieces/{piece_id}?format={fmt}")
            assert got.status_code == 200 and got.content == data, (piece_id, fmt)
    for piece_id, data in during.items():
        got = httpx.get(f"{again.base}/api/pieces/{piece_id}?format=mid")
        assert got.status_code == 200 and got.content == data, piece_id
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "data" / "pieces").iterdir())
    assert ".0123456789abcdef.mid.dead.tmp" in (tmp_path / "server.log").read_text()  # reported at start


def _piece(seed: int):
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest

    composer = load_composer(MODEL)
    return composer.compose(composer.validate(ComposeRequest(model=MODEL, bars=4, seed=seed)))


def test_a_crash_mid_write_never_leaves_a_piece_served_short(tmp_path):
    from orchestrion.server.errors import ApiError
    from orchestrion.server.stores import PieceStore

    store = PieceStore(tmp_path)
    kept, short, recordless = (store.add(_piece(seed)) for seed in (1, 2, 3))
    kept_midi = (tmp_path / f"{kept}.mid").read_bytes()
    # What a kill can leave: a temporary file, data whose record was never written, and (were files written
    # in place) a record beside a short data file.
    (tmp_path / f".{kept}.mid.1a2b3c4d.tmp").write_bytes(kept_midi[:10])
    (tmp_path / f".{kept}.mid.5e6f7a8b.tmp.mid").write_bytes(kept_midi[:10])  # core.files keeps the suffix
    (tmp_path / f"{recordless}.json").unlink()
    midi = tmp_path / f"{short}.mid"
    midi.write_bytes(midi.read_bytes()[:-5])

    reopened = PieceStore(tmp_path)
    assert sorted(reopened.stray) == sorted(
        [
            f".{kept}.mid.1a2b3c4d.tmp",
            f".{kept}.mid.5e6f7a8b.tmp.mid",
            f"{recordless}.mid",
            f"{short}.json",
            f"{short}.mid",
        ]
    )
    assert len(reopened) == 1 and bytes(reopened.get(kept).score.dumps_midi()) == kept_midi
    for gone in (short, recordless):
        with pytest.raises(ApiError) as err:
            reopened.get(gone)
        assert err.value.status == 404
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{kept}.json", f"{kept}.mid"]


def test_a_damaged_file_is_refused_not_served(tmp_path):
    from orchestrion.server.errors import ApiError
    from orchestrion.server.stores import PieceStore

    store = PieceStore(tmp_path)
    piece_id = store.add(_piece(1))
    midi = tmp_path / f"{piece_id}.mid"
    data = bytearray(midi.read_bytes())
    data[-3] ^= 0xFF  # same size, other bytes: only the checksum can tell
    midi.write_bytes(bytes(data))
    with pytest.raises(ApiError) as err:
        store.get(piece_id)
    assert err.value.status == 500 and "damaged" in err.value.message


def test_the_disk_keeps_the_newest_pieces_within_its_caps(tmp_path):
    import numpy as np

    from orchestrion.composer import Piece
    from orchestrion.server.stores import PieceStore

    store = PieceStore(tmp_path, capacity=2)
    ids = [store.add(_piece(seed)) for seed in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{i}.{ext}" for i in ids[2:] for ext in ("json", "mid")
    )
    assert len(PieceStore(tmp_path, capacity=2)) == 2
    assert len(PieceStore(tmp_path, capacity=1)) == 1 and not (tmp_path / f"{ids[2]}.json").exists()  # oldest first

    small = PieceStore(tmp_path / "bytes", max_bytes=10_000_000)
    tone = np.zeros(1_000_000, dtype=np.float32)  # 4 MB as float WAV
    audio = [small.add(Piece(provenance={}, audio=tone)) for _ in range(3)]
    assert len(small) == 2 and not (tmp_path / "bytes" / f"{audio[0]}.wav").exists()
    assert np.array_equal(small.get(audio[2]).audio, tone)  # float WAV on disk: the samples come back exactly


def test_prompts_survive_a_restart(tmp_path):
    from orchestrion.server.stores import PromptStore

    store = PromptStore(tmp_path)
    prompt_id = store.add(b"X:1\nK:C\nC|", ".abc")
    (tmp_path / f".{prompt_id}.abc.dead.tmp").write_bytes(b"X:")
    again = PromptStore(tmp_path)
    assert again.path(prompt_id).read_bytes() == b"X:1\nK:C\nC|"
    assert again.stray == [f".{prompt_id}.abc.dead.tmp"] and len(list(tmp_path.iterdir())) == 1


def test_the_default_data_dir(monkeypatch, tmp_path):
    from orchestrion.server.app import default_data_dir

    monkeypatch.delenv("ORCHESTRION_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "orchestrion" / "server"
    monkeypatch.setenv("ORCHESTRION_DATA", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"
    docs = (Path(__file__).parents[2] / "docs" / "serve.md").read_text()
    assert "--data-dir" in docs and "~/.local/share/orchestrion/server" in docs


def test_one_server_per_data_dir(tmp_path):
    from fastapi.testclient import TestClient

    from orchestrion.errors import OrchestrionError
    from orchestrion.server.app import create_app

    with TestClient(create_app([MODEL], data_dir=tmp_path)) as first:
        piece_id = first.post("/api/compose", json={"model": MODEL, "bars": 1, "seed": 1}).json()["id"]
        with pytest.raises(OrchestrionError, match="in use by another orchestrion server"):
            with TestClient(create_app([MODEL], data_dir=tmp_path)):
                pass
        assert first.get(f"/api/pieces/{piece_id}").status_code == 200  # the first one's files are untouched
    with TestClient(create_app([MODEL], data_dir=tmp_path)) as again:  # free once the first has stopped
        assert again.get(f"/api/pieces/{piece_id}").status_code == 200


def test_a_full_disk_is_an_error_answer_not_a_lost_connection(tmp_path, monkeypatch):
    import errno

    from fastapi.testclient import TestClient

    from orchestrion.server.app import create_app

    with TestClient(create_app([MODEL], data_dir=tmp_path)) as client:
        store = client.app.state.hub.pieces
        real_add = store.add

        def full(piece):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(store, "add", full)
        with client.websocket_connect("/stream") as ws:
            ws.send_json({"model": MODEL, "bars": 2, "seed": 1})
            while (msg := ws.receive_json())["type"] in ("start", "measure"):
                pass
            assert msg["type"] == "error" and "could not be saved" in msg["message"] and "No space" in msg["message"]
            monkeypatch.setattr(store, "add", real_add)
            ws.send_json({"model": MODEL, "bars": 2, "seed": 1})  # the same connection composes again
            while (msg := ws.receive_json())["type"] in ("start", "measure"):
                pass
            assert msg["type"] == "end" and client.get(f"/api/pieces/{msg['piece']}").status_code == 200
