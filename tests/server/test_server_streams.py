"""Every built-in model streamed by several clients at once on a freshly started `orchestrion serve`.

The regression for streams resumed on another thread ("Inplace update to inference tensor outside
InferenceMode", on the first GPT streams after a start), for batched GPT steps (a stream's piece is the
piece it is alone: the same bytes as `Composer.compose` in this process) and for failures being logged.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from orchestrion.registry import available_builtins

# Small requests: what matters is that each model's first streams run side by side on a fresh server.
REQUESTS = {
    "builtin:markov": {"bars": 4},
    "builtin:chorales": {"bars": 4, "candidates": 2},
    "builtin:folk": {"max_tokens": 48},
    "builtin:piano": {"seconds": 0.5},
}
MODELS = [m for m in REQUESTS if m in available_builtins()]

pytestmark = pytest.mark.skipif(not MODELS, reason="no built-in model is shipped")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    log = tempfile.TemporaryFile()
    data = tempfile.mkdtemp(prefix="orchestrion-streams-")
    args = [str(Path(sys.executable).with_name("orchestrion")), "serve", "--port", str(port), "--data-dir", data]
    for model in MODELS:
        args += ["--model", model]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"orchestrion serve did not start:\n{log.read().decode(errors='replace')}")
            time.sleep(0.2)
        yield url, proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def stream(url: str, request: dict) -> dict:
    from websockets.asyncio.client import connect

    seen: dict = {"types": {}}
    async with connect(url.replace("http", "ws") + "/stream", max_size=None, open_timeout=30) as ws:
        await ws.send(json.dumps(request))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=300))
            seen["types"][msg["type"]] = seen["types"].get(msg["type"], 0) + 1
            if msg["type"] in ("end", "error"):
                seen["last"] = msg
                return seen


def test_every_builtin_model_three_streams_at_a_time_on_a_fresh_server(server):
    url, _, log = server
    requests = [{"model": m, "seed": s, **REQUESTS[m]} for m in MODELS for s in (1, 2, 3)]

    async def all_at_once() -> list[dict]:
        return await asyncio.gather(*(stream(url, r) for r in requests))

    results = asyncio.run(all_at_once())
    for request, seen in zip(requests, results, strict=True):
        assert seen["last"]["type"] == "end", (request, seen["last"])
        assert seen["last"]["piece"], request
    health = httpx.get(f"{url}/api/health").json()
    assert health["jobs"]["active"] == 0
    for model in ("builtin:chorales", "builtin:folk"):
        if model in MODELS:
            shared = health["shared_steps"][model]
            assert shared["steps_per_batch"] > 1, (model, shared)  # three streams did share their steps
    log.seek(0)
    out = log.read().decode(errors="replace")
    assert "Traceback" not in out and "inference" not in out.lower(), out[-3000:]


@pytest.mark.skipif("builtin:chorales" not in MODELS, reason="builtin:chorales is not shipped")
def test_a_stream_batched_with_others_is_the_piece_it_is_alone(server):
    url, _, _ = server
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest

    request = {"model": "builtin:chorales", "bars": 4, "candidates": 2, "seed": 11}
    alone = load_composer("builtin:chorales").compose(ComposeRequest(**request))  # this process: no batching

    async def side_by_side() -> list[dict]:
        others = [{**request, "seed": s} for s in (12, 13)]
        return await asyncio.gather(*(stream(url, r) for r in [request, *others]))

    first = asyncio.run(side_by_side())[0]["last"]
    served = httpx.get(f"{url}/api/pieces/{first['piece']}", params={"format": "mid"}).content
    assert served == bytes(alone.score.dumps_midi())


def test_a_failing_stream_is_logged_and_the_server_goes_on(server):
    url, proc, log = server
    if "builtin:folk" not in MODELS:
        pytest.skip("builtin:folk is not shipped")
    # A prompt that is not an ABC tune fails inside the composer: the client gets a message, the log the traceback.
    files = {"file": ("not-a-tune.abc", b"X:1\nT:t\nK:C\n", "text/plain")}
    prompt = httpx.post(f"{url}/api/prompts", files=files).json()["id"]
    seen = asyncio.run(stream(url, {"model": "builtin:folk", "prompt": prompt, "max_tokens": 8, "seed": 1}))
    assert seen["last"]["type"] == "error"
    assert "/" not in seen["last"]["message"].replace("1/8", ""), seen["last"]  # no server path
    assert httpx.get(f"{url}/api/health").json()["status"] == "ok" and proc.poll() is None
    log.seek(0)
    assert "composing with builtin:folk failed" in log.read().decode(errors="replace")


def test_folk_requests_are_checked_before_composing_and_keep_their_instrument(server):
    url, _, _ = server
    if "builtin:folk" not in MODELS:
        pytest.skip("builtin:folk is not shipped")
    r = httpx.post(f"{url}/api/compose", json={"model": "builtin:folk", "meter": "banana"})
    assert r.status_code == 422 and r.json()["field"] == "meter"  # not a piece whose MIDI link fails later
    r = httpx.post(
        f"{url}/api/compose?format=json",
        json={"model": "builtin:folk", "seed": 4, "max_tokens": 48, "programs": [40]},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    piece = r.json()
    if piece.get("voices"):  # a tune abc2midi compiled: its notes play on the instrument asked for
        assert {v["program"] for v in piece["voices"]} == {40}
    assert "abc" in piece["summary"]["formats"]
