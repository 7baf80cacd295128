"""Load benchmark for the web server: N concurrent websocket clients each stream a markov piece.

It starts `orchestrion serve` on 127.0.0.1 (a free port), connects N clients, then has all of them send
their request at the same instant (the worst burst), and records for each client the time from sending the
request to its first measure and the gaps between measures. The peer is the same server answered the
non-streaming way (the whole piece composed, then sent: POST /api/compose), which is how a client would
have to wait without the websocket; its "first measure" is the full response. Prints p50/p99 and the ratio.

    .venv/bin/python benchmarks/serve_load.py                 # 50 clients x 32 measures
    .venv/bin/python benchmarks/serve_load.py --clients 10 --bars 8

Loopback only; every wait is bounded, so the script always ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, max_jobs: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("orchestrion")
    proc = subprocess.Popen(
        [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--model", model, "--max-jobs", str(max_jobs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 90 s")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def ws_client(url: str, request: dict, go: asyncio.Event, bars: int, result: dict) -> None:
    from websockets.asyncio.client import connect

    t = time.perf_counter()
    async with connect(url, max_size=None, open_timeout=30) as ws:
        result["connect"] = time.perf_counter() - t
        await go.wait()
        sent = time.perf_counter()
        await ws.send(json.dumps(request))
        arrivals = []
        while True:
            text = await ws.recv()
            if text.startswith('{"type":"measure"'):  # the server's compact JSON; skip parsing the bulk
                arrivals.append(time.perf_counter())
                continue
            msg = json.loads(text)
            if msg["type"] == "measure":
                arrivals.append(time.perf_counter())
            elif msg["type"] == "end":
                break
            elif msg["type"] == "error":
                raise RuntimeError(f"{msg['field']}: {msg['message']}")
    if len(arrivals) != bars:
        raise RuntimeError(f"got {len(arrivals)} measures, expected {bars}")
    result["first"] = arrivals[0] - sent
    result["gaps"] = list(np.diff(arrivals))
    result["total"] = arrivals[-1] - sent


async def run_streaming(port: int, clients: int, bars: int, model: str, timeout: float) -> dict:
    url = f"ws://127.0.0.1:{port}/stream"
    go = asyncio.Event()
    results = [{} for _ in range(clients)]
    tasks = [
        asyncio.create_task(
            asyncio.wait_for(ws_client(url, {"model": model, "bars": bars, "seed": i}, go, bars, results[i]), timeout)
        )
        for i in range(clients)
    ]
    # Everyone connects first, then all requests go out together.
    deadline = time.monotonic() + timeout
    while sum("connect" in r for r in results) + sum(t.done() for t in tasks) < clients and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    go.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    ok = [r for r, o in zip(results, outcomes, strict=True) if not isinstance(o, BaseException)]
    return {
        "errors": errors,
        "first": [r["first"] for r in ok],
        "gaps": [g for r in ok for g in r["gaps"]],
        "total": [r["total"] for r in ok],
        "connect": [r["connect"] for r in results if "connect" in r],
    }


async def run_whole_piece(port: int, clients: int, bars: int, model: str, timeout: float) -> dict:
    url = f"http://127.0.0.1:{port}/api/compose"
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def one(i: int) -> float:
            t = time.perf_counter()
            r = await client.post(url, json={"model": model, "bars": bars, "seed": i})
            r.raise_for_status()
            if max(n["start"] for n in r.json()["notes"]) < (bars - 1) * 4:
                raise RuntimeError("the piece is short")
            return time.perf_counter() - t

        outcomes = await asyncio.gather(*(one(i) for i in range(clients)), return_exceptions=True)
    return {
        "errors": [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)],
        "first": [o for o in outcomes if not isinstance(o, BaseException)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--model", default="builtin:markov")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per client")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--port", type=int, help="use a server already running on 127.0.0.1:PORT")
    args = parser.parse_args()

    port = args.port or free_port()
    server = None if args.port else start_server(args.model, port, max_jobs=max(64, args.clients))
    try:
        asyncio.run(run_streaming(port, 2, 2, args.model, args.timeout))  # warm-up: first-request costs
        ours = asyncio.run(run_streaming(port, args.clients, args.bars, args.model, args.timeout))
        peer = asyncio.run(run_whole_piece(port, args.clients, args.bars, args.model, args.timeout))
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()

    p99_ours, p99_peer = pct(ours["first"], 99), pct(peer["first"], 99)
    figures = {
        "clients": args.clients,
        "bars": args.bars,
        "model": args.model,
        "stream_first_measure_ms": {"p50": pct(ours["first"], 50), "p99": p99_ours},
        "stream_per_measure_ms": {"p50": pct(ours["gaps"], 50), "p99": pct(ours["gaps"], 99)},
        "stream_whole_piece_ms": {"p50": pct(ours["total"], 50), "p99": pct(ours["total"], 99)},
        "stream_connect_ms": {"p50": pct(ours["connect"], 50), "p99": pct(ours["connect"], 99)},
        "stream_errors": len(ours["errors"]),
        "peer_first_measure_ms": {"p50": pct(peer["first"], 50), "p99": p99_peer},
        "peer_errors": len(peer["errors"]),
        "ratio_p99_first_measure": p99_peer / p99_ours if p99_ours > 0 else float("nan"),
    }
    print(f"{args.clients} concurrent clients x {args.bars} measures of {args.model}, server on 127.0.0.1")
    print(f"{'':34}{'p50 ms':>10}{'p99 ms':>10}")
    for label, key in [
        ("websocket: time to first measure", "stream_first_measure_ms"),
        ("websocket: time per measure", "stream_per_measure_ms"),
        ("websocket: whole piece", "stream_whole_piece_ms"),
        ("websocket: connect", "stream_connect_ms"),
        ("peer (POST, whole piece first)", "peer_first_measure_ms"),
    ]:
        print(f"{label:34}{figures[key]['p50']:10.1f}{figures[key]['p99']:10.1f}")
    print(f"errors: websocket {figures['stream_errors']}, peer {figures['peer_errors']}")
    for err in (ours["errors"] + peer["errors"])[:5]:
        print("  ", err)
    print(f"ratio (peer p99 / ours p99, time to first measure): {figures['ratio_p99_first_measure']:.1f}x")
    target = figures["stream_errors"] == 0 and p99_ours < 250
    print(f"target (0 errors, p99 first measure < 250 ms): {'met' if target else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
