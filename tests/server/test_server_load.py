"""A short version of the load benchmark (benchmarks/serve_load.py --mixed / --cycles) against a real
`orchestrion serve`: misbehaving clients get their errors and the well-formed ones their music, the server
stays up, and a few hundred connect/disconnect cycles leave no job running and memory within a wide bound.
The full runs, with timings, are benchmarks (BENCHMARKS.md); nothing here asserts on time."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

MODEL = "builtin:markov"


def _have_model() -> bool:
    from orchestrion.registry import available_builtins

    return MODEL in available_builtins()


pytestmark = pytest.mark.skipif(not _have_model(), reason=f"{MODEL} is not shipped yet")


@pytest.fixture(scope="module")
def load():
    path = Path(__file__).parents[2] / "benchmarks" / "serve_load.py"
    spec = importlib.util.spec_from_file_location("serve_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(load, tmp_path_factory):
    port = load.free_port()
    proc = load.start_server(MODEL, port, max_jobs=64, data_dir=str(tmp_path_factory.mktemp("data")))
    yield port, proc
    load.stop_server(proc)


def test_misbehaving_clients_do_not_hurt_the_well_formed_ones(load, server):
    import httpx

    port, proc = server
    mixed = asyncio.run(load.run_mixed(port, clients=20, bars=8, model=MODEL, timeout=60))
    streamed = mixed["streamed"]
    assert streamed["errors"] == [] and len(streamed["first"]) == 10  # every well-formed client got all 8 measures
    for kind, outcome in mixed["misbehaving"].items():
        assert outcome["clients"] == 2 and outcome["unexpected"] == 0, (kind, outcome["examples"])
    assert proc.poll() is None
    health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).json()
    assert health["status"] == "ok"
    proc.log.seek(0)
    assert b"Traceback" not in proc.log.read()  # clients that leave mid-body are not logged as server errors


def test_connect_disconnect_cycles_leave_nothing_behind(load, server):
    port, proc = server
    cycles = asyncio.run(load.run_cycles(port, proc.pid, 200, concurrency=8))
    assert cycles["errors"] == {} and proc.poll() is None
    assert cycles["jobs_active_at_end"] == 0  # no composition runs on for the clients that dropped
    assert cycles["jobs"]["cancelled"] >= 40  # the 40 that left mid-piece were cancelled, not finished
    rss = cycles["rss_kib"]
    assert rss["end"] - rss["start"] < 64 * 1024, rss  # generous: the full run's slope is in BENCHMARKS.md


def test_an_oversized_websocket_message_closes_the_connection(server):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from orchestrion.server.state import MAX_JSON_BYTES

    port, proc = server
    with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=10) as ws:
        ws.send('{"title": "' + "x" * MAX_JSON_BYTES + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
    assert proc.poll() is None
