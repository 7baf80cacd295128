"""WS /stream: send a compose request, get the piece back chunk by chunk as the composer makes it.

Protocol (JSON text messages):
  client -> {"model": "builtin:markov", "bars": 8, "seed": 3}   (a ComposeRequest; "type": "compose" optional)
  server -> {"type": "start", "request": {...with the concrete seed...}}
            {"type": "measure" | "audio" | "text", ...}          (Chunk.to_json(), one per chunk)
            {"type": "end", "piece": ID, "chunks": N, "seconds": S, "provenance": {...}}
         or {"type": "error", "field": ..., "message": ...}      (bad request, busy, or a failed composer)
  client -> {"type": "stop"} ends the piece early (answered by "end" with "stopped": true).
One connection can make several pieces in turn. Composition runs in the executor, one chunk per call, and a
stop or a closed connection ends it between two chunks: no work goes on for a client that left.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from orchestrion.composers.base import Chunk, Composer
from orchestrion.requests import ComposeRequest
from orchestrion.server.state import ApiError, ServerState, api_error_from, assemble

router = APIRouter()

_END = object()


def _pull(stream: Iterator[Chunk]) -> tuple[object, str]:
    """One chunk and its JSON text, made in a worker thread (encoding there keeps the event loop free)."""
    chunk = next(stream, _END)
    if chunk is _END:
        return _END, ""
    return chunk, json.dumps(chunk.to_json(), separators=(",", ":"))


def _close_when_idle(executor: Executor, pending: Future | None, generator: Iterator[Chunk]) -> None:
    """Close the composer's generator (running its cleanup) once its last next() has returned.

    A generator cannot be closed while another thread runs it, so a still-running pull closes it when done.
    """

    def close(_: object = None) -> None:
        executor.submit(generator.close)

    if pending is not None and not pending.done():
        pending.add_done_callback(close)
    else:
        close()


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    await websocket.accept()
    state: ServerState = websocket.app.state.hub
    try:
        while True:
            text = await websocket.receive_text()
            try:
                body = json.loads(text)
            except ValueError as exc:
                await websocket.send_json(ApiError(422, "body", f"malformed JSON: {exc}").to_json())
                continue
            if isinstance(body, dict):
                kind = body.pop("type", "compose")
                if kind == "stop":
                    continue  # nothing is playing: a late stop is harmless
                if kind != "compose":
                    await websocket.send_json(
                        ApiError(422, "type", f"unknown message type {kind!r}; send a request or 'stop'").to_json()
                    )
                    continue
            try:
                composer, request = state.prepare(body)
                with state.jobs.slot():
                    gone = await _compose(websocket, state, composer, request)
            except ApiError as exc:
                await websocket.send_json(exc.to_json())
                continue
            if gone:
                return
    except WebSocketDisconnect:
        return


async def _compose(websocket: WebSocket, state: ServerState, composer: Composer, request: ComposeRequest) -> bool:
    """Stream one piece; True when the client went away (so the connection is done)."""
    stop = asyncio.Event()
    gone = False

    async def listen() -> None:
        nonlocal gone
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                gone = True
                stop.set()
                return
            try:
                kind = json.loads(message.get("text") or "{}").get("type")
            except (ValueError, AttributeError):
                kind = None
            if kind == "stop":
                stop.set()
                return
            await websocket.send_json(
                ApiError(409, "type", "a piece is being composed: send {\"type\": \"stop\"} first").to_json()
            )

    listener = asyncio.create_task(listen())
    began = time.perf_counter()
    chunks: list[Chunk] = []
    generator = composer.stream(request)
    pending: Future | None = None
    failure: ApiError | None = None
    finished = False
    try:
        await websocket.send_json({"type": "start", "request": state.public_request(request)})
        while not stop.is_set():
            pending = state.executor.submit(_pull, generator)
            try:
                chunk, text = await asyncio.wrap_future(pending)
            except Exception as exc:  # a composer that fails ends this piece, not the server
                failure = api_error_from(exc)
                break
            if chunk is _END or stop.is_set():
                break
            state.jobs.count_chunk()
            chunks.append(chunk)
            try:
                await websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError):
                gone = True
                break
        finished = True
    finally:
        # This runs without awaiting, so it also runs when the server cancels this task (client gone).
        listener.cancel()
        _close_when_idle(state.executor, pending, generator)
        if not finished or gone or (stop.is_set() and failure is None):
            state.jobs.count_cancel()
    await asyncio.wait({listener})  # let the cancelled listener finish before anyone else reads the socket
    if gone:
        return True
    if failure is not None:
        await websocket.send_json(failure.to_json())
        return False
    stopped = stop.is_set()
    piece = assemble(composer, request, chunks)
    piece_id = state.pieces.add(piece)
    from orchestrion.server.formats import public_provenance

    await websocket.send_json(
        {
            "type": "end",
            "piece": piece_id,
            "chunks": len(chunks),
            "stopped": stopped,
            "seconds": round(time.perf_counter() - began, 4),
            "provenance": public_provenance(piece),
        }
    )
    return False
