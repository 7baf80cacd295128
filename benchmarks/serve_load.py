"""Load benchmark for the web server: N concurrent websocket clients each stream a markov piece.

It starts `orchestrion serve` on 127.0.0.1 (a free port), connects N clients, then has all of them send
their request at the same instant (the worst burst), and records for each client the time from sending the
request to its first measure and the gaps between measures. The peer is the same server answered the
non-streaming way (the whole piece composed, then sent: POST /api/compose), which is how a client would
have to wait without the websocket; its "first measure" is the full response. Prints p50/p99 and the ratio.

    .venv/bin/python benchmarks/serve_load.py                 # 50 clients x 32 measures
    .venv/bin/python benchmarks/serve_load.py --clients 10 --bars 8

GPT models: `--batching` runs the same clients twice, on a server whose concurrent streams each run their
own model steps (ORCHESTRION_SHARED_STEPS=0: the peer) and on one that batches them (the default), and
prints both side by side with the ratio (no POST peer: a whole chorale per client would double the run):

    .venv/bin/python benchmarks/serve_load.py --model builtin:chorales --bars 4 --batching
    .venv/bin/python benchmarks/serve_load.py --model builtin:chorales --bars 4 --batching --extra '{"candidates": 1}'

Two robustness modes:

    .venv/bin/python benchmarks/serve_load.py --mixed         # 200 clients, half of them misbehaving
    .venv/bin/python benchmarks/serve_load.py --cycles 10000  # connect/disconnect cycles, server RSS sampled

`--mixed`: of `--clients` (default 200) clients, half stream well-formed requests (timed as above) while the
rest, in equal parts, send malformed JSON, oversized uploads and bodies, stall (HTTP headers then a byte a
second; websockets that ask for a long piece and never read) and leave abruptly mid-stream (no close frame).
The well-formed clients' first-measure latency is compared with a clean run of the same number of them alone.
`--cycles N`: N websocket and HTTP connect/disconnect cycles (some start a piece and drop), 16 at a time,
with the server's resident memory read from /proc every N/40 cycles; prints the curve and its slope.

Loopback only; every wait is bounded, so the script always ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: str, port: int, max_jobs: int, data_dir: str | None = None, env: dict | None = None
) -> subprocess.Popen:
    import os

    exe = Path(sys.executable).with_name("orchestrion")
    extra = ["--data-dir", data_dir] if data_dir else []
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [
            str(exe),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            model,
            "--max-jobs",
            str(max_jobs),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: a pipe nobody reads fills up and then blocks the server on its next log line.
        stderr=log,
        env={**os.environ, **(env or {})},
    )
    proc.log = log  # type: ignore[attr-defined]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited: {log.read().decode(errors='replace')}")
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


async def run_streaming(
    port: int, clients: int, bars: int, model: str, timeout: float, extra: dict | None = None
) -> dict:
    url = f"ws://127.0.0.1:{port}/stream"
    go = asyncio.Event()
    results = [{} for _ in range(clients)]
    tasks = [
        asyncio.create_task(
            asyncio.wait_for(
                ws_client(url, {"model": model, "bars": bars, "seed": i, **(extra or {})}, go, bars, results[i]),
                timeout,
            )
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


# ------------------------------------------------------------------------------------ misbehaving


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS) in KiB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _abort(ws: object) -> None:
    """Drop the TCP connection without a close frame, as a client that crashes or loses its network."""
    transport = getattr(ws, "transport", None)
    if transport is not None:
        transport.abort()


async def malformed_client(port: int, i: int) -> str:
    """Garbage over the websocket and over HTTP; every one must be answered with an error, not a crash."""
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=30) as ws:
        for bad in ("{not json", "[1, 2]", '{"model": 3}', '{"type": "dance"}', "\u0000" * 100, '{"bars": -1}'):
            await ws.send(bad)
            msg = json.loads(await ws.recv())
            if msg.get("type") != "error":
                raise RuntimeError(f"malformed request answered with {msg.get('type')}")
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(
            f"http://127.0.0.1:{port}/api/compose", content=b'{"model": ', headers={"content-type": "application/json"}
        )
        if r.status_code != 422:
            raise RuntimeError(f"malformed JSON body answered {r.status_code}")
    return "answered"


async def oversized_client(port: int, i: int) -> str:
    """An upload past its cap and a JSON body past its cap, with and without a Content-Length."""
    async with httpx.AsyncClient(timeout=60) as client:
        if i % 2:
            r = await client.post(
                f"http://127.0.0.1:{port}/api/prompts",
                files={"file": ("big.mid", b"\0" * (2 * 2**20 + 1), "audio/midi")},
            )
        else:

            async def endless():  # 64 MiB, no Content-Length: the server must stop reading after its 1 MiB cap
                for _ in range(1024):
                    yield b" " * 65536

            try:
                r = await client.post(
                    f"http://127.0.0.1:{port}/api/compose",
                    content=endless(),
                    headers={"content-type": "application/json"},
                )
            except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
                return "cut off"  # the server answered 413 and closed while the body was still going out
        if r.status_code != 413:
            raise RuntimeError(f"oversized body answered {r.status_code}")
    return "answered"


async def slow_client(port: int, i: int, until: asyncio.Event) -> str:
    """Stall: HTTP headers then one body byte a second; or a websocket that asks for a long piece and never reads."""
    if i % 2:
        from websockets.asyncio.client import connect

        ws = await connect(f"ws://127.0.0.1:{port}/stream", open_timeout=30, max_size=None)
        await ws.send(json.dumps({"model": "builtin:markov", "bars": 4096, "seed": i}))
        await until.wait()  # never reading: the server's sends back up
        _abort(ws)
        return "stalled"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/compose HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    await writer.drain()
    while not until.is_set():
        writer.write(b" ")
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), 1.0)
    writer.transport.abort()
    return "stalled"


async def leaving_client(port: int, i: int) -> str:
    """Ask for a long piece, read a few measures, then drop the connection without a close frame."""
    from websockets.asyncio.client import connect

    ws = await connect(f"ws://127.0.0.1:{port}/stream", open_timeout=30, max_size=None)
    await ws.send(json.dumps({"model": "builtin:markov", "bars": 4096, "seed": i}))
    for _ in range(1 + i % 5):
        await ws.recv()
    _abort(ws)
    return "left"


async def run_mixed(port: int, clients: int, bars: int, model: str, timeout: float) -> dict:
    """Half the clients stream well-formed requests (timed); the other half misbehave, in four kinds."""
    good = clients // 2
    kinds = {
        "malformed": malformed_client,
        "oversized": oversized_client,
        "slow": slow_client,
        "leaving": leaving_client,
    }
    per_kind = (clients - good) // len(kinds)
    until = asyncio.Event()
    bad_tasks: dict[str, list[asyncio.Task]] = {}
    for name, fn in kinds.items():
        args = (until,) if name == "slow" else ()
        bad_tasks[name] = [asyncio.create_task(asyncio.wait_for(fn(port, i, *args), timeout)) for i in range(per_kind)]
    await asyncio.sleep(0.5)  # the misbehaving ones are under way when the well-formed burst comes
    streamed = await run_streaming(port, good, bars, model, timeout)
    until.set()
    outcomes = {}
    for name, tasks in bad_tasks.items():
        done = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [f"{type(o).__name__}: {o}" for o in done if isinstance(o, BaseException)]
        outcomes[name] = {"clients": len(tasks), "unexpected": len(errors), "examples": errors[:3]}
    return {"streamed": streamed, "misbehaving": outcomes, "good": good}


async def run_cycles(
    port: int, pid: int, cycles: int, concurrency: int = 16, kinds: tuple[int, ...] = (0, 1, 2, 3, 4), seeds: int = 64
) -> dict:
    """`cycles` connect/disconnect cycles of five kinds, `concurrency` at a time; the server's RSS sampled.

    Pieces cycle through `seeds` seeds: the markov composer memoises each measure's chord pattern (up to 50,000
    of them, by design), so with endless new seeds its cache, not the server, is what grows until that cap.
    """
    from websockets.asyncio.client import connect

    every = max(1, cycles // 40)
    samples: list[tuple[int, int]] = [(0, rss_kib(pid))]
    errors: dict[str, int] = {}
    done = 0
    counter = iter(range(cycles))

    async def one(i: int, client: httpx.AsyncClient) -> None:
        kind = kinds[i % len(kinds)]
        seed = i % seeds
        if kind == 0:  # websocket: open and close
            async with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=30):
                pass
        elif kind == 1:  # websocket: start a long piece, take one measure, vanish (the server mid-send or waiting)
            ws = await connect(f"ws://127.0.0.1:{port}/stream", open_timeout=30, max_size=None)
            paced = {"tempo": 400, "lead": 1} if i % 2 else {}
            await ws.send(json.dumps({"model": "builtin:markov", "bars": 4096, "seed": seed, **paced}))
            await ws.recv()
            await ws.recv()
            _abort(ws)
        elif kind == 2:  # websocket: a short piece to the end, then a clean close
            async with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=30) as ws:
                await ws.send(json.dumps({"model": "builtin:markov", "bars": 2, "seed": seed}))
                while json.loads(await ws.recv())["type"] != "end":
                    pass
        elif kind == 3:  # HTTP on a fresh connection each time
            async with httpx.AsyncClient(timeout=30) as fresh:
                (await fresh.get(f"http://127.0.0.1:{port}/api/health")).raise_for_status()
        else:  # HTTP compose (a piece written to the store), on a kept-alive connection
            r = await client.post(f"http://127.0.0.1:{port}/api/compose?format=mid", json={"bars": 2, "seed": seed})
            r.raise_for_status()

    async def worker() -> None:
        nonlocal done
        async with httpx.AsyncClient(timeout=30) as client:
            for i in counter:
                try:
                    await asyncio.wait_for(one(i, client), 60)
                except Exception as exc:  # counted, not fatal: the run goes on and reports them
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                done += 1
                if done % every == 0:
                    samples.append((done, rss_kib(pid)))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await asyncio.sleep(1.0)  # let the server finish closing what the last cycles dropped
    samples.append((cycles, rss_kib(pid)))
    async with httpx.AsyncClient(timeout=30) as client:
        health = (await client.get(f"http://127.0.0.1:{port}/api/health")).json()
    warm = next(s for s in samples if s[0] >= cycles // 10)
    after = [s for s in samples if s[0] >= warm[0]]
    slope = float(np.polyfit([s[0] for s in after], [s[1] for s in after], 1)[0]) * 1000 if len(after) > 2 else 0.0
    return {
        "cycles": cycles,
        "seconds": round(time.perf_counter() - began, 1),
        "errors": errors,
        "rss_kib": {"start": samples[0][1], "warm": warm[1], "end": samples[-1][1]},
        "warm_cycle": warm[0],
        "slope_kib_per_1000_cycles": round(slope, 1),
        "samples": samples,
        "jobs_active_at_end": health["jobs"]["active"],
        "jobs": health["jobs"],
    }


def report_mixed(mixed: dict, clean: dict, alive: bool) -> dict:
    m, c = mixed["streamed"], clean["streamed"]
    figures = {
        "clients": mixed["good"] * 2,
        "well_formed": mixed["good"],
        "server_up": alive,
        "first_measure_ms_mixed": {"p50": pct(m["first"], 50), "p99": pct(m["first"], 99)},
        "first_measure_ms_clean": {"p50": pct(c["first"], 50), "p99": pct(c["first"], 99)},
        "well_formed_errors": {"mixed": len(m["errors"]), "clean": len(c["errors"])},
        "misbehaving": mixed["misbehaving"],
    }
    for q in ("p50", "p99"):
        clean_q = figures["first_measure_ms_clean"][q]
        figures[f"ratio_{q}"] = figures["first_measure_ms_mixed"][q] / clean_q if clean_q > 0 else float("nan")
    print(f"{figures['clients']} clients: {mixed['good']} well-formed streamers + misbehaving ones; server up: {alive}")
    print(f"{'first measure (well-formed)':34}{'p50 ms':>10}{'p99 ms':>10}")
    print(
        f"{'  clean run (alone)':34}{figures['first_measure_ms_clean']['p50']:10.1f}{figures['first_measure_ms_clean']['p99']:10.1f}"
    )
    print(
        f"{'  mixed run':34}{figures['first_measure_ms_mixed']['p50']:10.1f}{figures['first_measure_ms_mixed']['p99']:10.1f}"
    )
    print(f"{'  ratio mixed / clean':34}{figures['ratio_p50']:10.2f}{figures['ratio_p99']:10.2f}")
    print(f"well-formed errors: clean {len(c['errors'])}, mixed {len(m['errors'])}")
    for err in m["errors"][:3]:
        print("  ", err)
    print(f"{'misbehaving kind':14}{'clients':>8}{'unexpected':>12}")
    for name, o in mixed["misbehaving"].items():
        print(f"{name:14}{o['clients']:8}{o['unexpected']:12}  {'; '.join(o['examples'])}")
    return figures


def report_cycles(c: dict) -> None:
    rss = c["rss_kib"]
    print(f"{c['cycles']} connect/disconnect cycles in {c['seconds']} s; errors: {c['errors'] or 'none'}")
    print(f"server RSS: start {rss['start'] / 1024:.1f} MiB, after warm-up ({c['warm_cycle']} cycles) "
          f"{rss['warm'] / 1024:.1f} MiB, end {rss['end'] / 1024:.1f} MiB")  # fmt: skip
    print(f"slope after warm-up: {c['slope_kib_per_1000_cycles']:+.1f} KiB per 1000 cycles")
    print(
        "curve (cycles: MiB):",
        ", ".join(f"{n}: {k / 1024:.1f}" for n, k in c["samples"][:: max(1, len(c["samples"]) // 10)]),
    )
    print(f"jobs at the end: {c['jobs']}")


def stop_server(server: subprocess.Popen | None) -> None:
    if server is not None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        server.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--model", default="builtin:markov")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per client")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--port", type=int, help="use a server already running on 127.0.0.1:PORT")
    parser.add_argument("--mixed", action="store_true", help="half the clients misbehave (default 200 clients)")
    parser.add_argument("--cycles", type=int, help="this many connect/disconnect cycles, the server's RSS sampled")
    parser.add_argument("--seeds", type=int, default=64, help="--cycles: pieces cycle through this many seeds")
    parser.add_argument("--batching", action="store_true", help="GPT: steps of concurrent streams batched vs not")
    parser.add_argument("--extra", type=json.loads, default={}, help="more request fields, as JSON")
    args = parser.parse_args()
    if args.batching:
        return batching(args)
    if args.mixed or args.cycles:
        if args.port:
            parser.error("--mixed and --cycles start their own server (they read its memory)")
        return robustness(args)

    port = args.port or free_port()
    data_dir = tempfile.TemporaryDirectory(prefix="orchestrion-load-")  # never the user's own data directory
    server = None if args.port else start_server(args.model, port, max(64, args.clients), data_dir.name)
    try:
        asyncio.run(run_streaming(port, 2, 2, args.model, args.timeout))  # warm-up: first-request costs
        ours = asyncio.run(run_streaming(port, args.clients, args.bars, args.model, args.timeout))
        peer = asyncio.run(run_whole_piece(port, args.clients, args.bars, args.model, args.timeout))
    finally:
        stop_server(server)
        data_dir.cleanup()

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


def batching(args: argparse.Namespace) -> None:
    """The same burst of clients against a server without and with batched steps (module docstring)."""
    runs = {}
    for label, shared in (("each stream alone", "0"), ("batched steps", "1")):
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="orchestrion-load-") as data_dir:
            server = start_server(
                args.model, port, max(64, args.clients), data_dir, env={"ORCHESTRION_SHARED_STEPS": shared}
            )
            try:
                asyncio.run(run_streaming(port, 2, args.bars, args.model, args.timeout, args.extra))  # warm-up
                run = asyncio.run(run_streaming(port, args.clients, args.bars, args.model, args.timeout, args.extra))
                run["shared"] = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).json()["shared_steps"]
            finally:
                stop_server(server)
        runs[label] = run
    alone, ours = runs["each stream alone"], runs["batched steps"]
    request = {"bars": args.bars, **args.extra}
    print(f"{args.clients} concurrent clients streaming {args.model} {request}, server on 127.0.0.1")
    print(f"{'':34}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    figures: dict = {"clients": args.clients, "model": args.model, "request": request}
    for label, run in runs.items():
        for what, key in (("first measure", "first"), ("whole piece", "total")):
            row = {"p50": pct(run[key], 50), "p99": pct(run[key], 99)}
            figures[f"{label}: {what}"] = row
            print(f"{label + ': ' + what:34}{row['p50']:10.1f}{row['p99']:10.1f}{len(run['errors']):8d}")
        for err in run["errors"][:3]:
            print("  ", err)
    stats = ours["shared"].get(args.model, {})
    figures["shared_steps"] = stats
    figures["errors"] = {label: len(run["errors"]) for label, run in runs.items()}
    ratio = pct(alone["first"], 99) / pct(ours["first"], 99) if ours["first"] else float("nan")
    figures["ratio_p99_first_measure"] = ratio
    print(f"batched steps: {stats}")
    print(f"ratio (alone p99 / batched p99, time to first measure): {ratio:.2f}x")
    target = not ours["errors"] and pct(ours["first"], 99) < 1000
    print(f"target (0 errors, p99 first measure < 1 s): {'met' if target else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def robustness(args: argparse.Namespace) -> None:
    port = free_port()
    clients = args.clients if "--clients" in sys.argv else 200
    with tempfile.TemporaryDirectory(prefix="orchestrion-load-") as data_dir:
        server = start_server(args.model, port, max_jobs=max(64, clients), data_dir=data_dir)
        figures: dict = {}
        try:
            asyncio.run(run_streaming(port, 2, 2, args.model, args.timeout))  # warm-up
            if args.mixed:
                clean = {
                    "streamed": asyncio.run(run_streaming(port, clients // 2, args.bars, args.model, args.timeout))
                }
                mixed = asyncio.run(run_mixed(port, clients, args.bars, args.model, args.timeout))
                alive = (
                    server.poll() is None and httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).is_success
                )
                figures["mixed"] = report_mixed(mixed, clean, alive)
            if args.cycles:
                figures["cycles"] = cycles = asyncio.run(run_cycles(port, server.pid, args.cycles, seeds=args.seeds))
                report_cycles(cycles)
                figures["server_up_after_cycles"] = server.poll() is None
        finally:
            stop_server(server)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
