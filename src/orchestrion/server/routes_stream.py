"""WS /stream: send a compose request, get the piece back chunk by chunk as the composer makes it.

Protocol (JSON text messages):
  client -> {"model": "builtin:markov", "bars": 8, "seed": 3}   (a ComposeRequest; "type": "compose" optional)
  server -> {"type": "start", "request": {...with the concrete seed...}}
            {"type": "measure" | "audio" | "text", ...}          (Chunk.to_json(), one per chunk)
            {"type": "notes" | "restart", ...}                   (ABC tunes: notes so far, `preview.py`)
            {"type": "end", "piece": ID, "chunks": N, "seconds": S, "provenance": {...}, "summary": {...}}
         or {"type": "error", "field": ..., "message": ...}      (bad request, busy, or a failed composer)
  client -> {"type": "stop"} ends the piece early (answered by "end" with "stopped": true).
A request may carry "lead": N (seconds): the server then composes at most N seconds of music ahead of the
listener (the web client plays as it goes and asks for this); without it, chunks go out as fast as they are made.
One connection can make several pieces in turn. Each piece is composed on a thread of its own
(`streams.StreamRunner`), and a stop or a closed connection ends it at the next chunk or model step: no
work goes on for a client that left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from orchestrion.composer import AudioBlock, Chunk, Composer, Measure
from orchestrion.requests import ComposeRequest
from orchestrion.server.errors import ApiError
from orchestrion.server.formats import public_provenance
from orchestrion.server.security import websocket_refusal
from orchestrion.server.state import MAX_JSON_BYTES, ServerState

router = APIRouter()
log = logging.getLogger("orchestrion.server")

MAX_LEAD = 3600.0


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    if (refusal := websocket_refusal(websocket)) is not None:
        # Browsers let any page open a websocket to 127.0.0.1; only this app's own page may use this one.
        await websocket.close(code=1008, reason=refusal)
        return
    await websocket.accept()
    state: ServerState = websocket.app.state.hub
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await websocket.send_json(ApiError(422, "body", "send the request as a JSON text message").to_json())
                continue
            if len(text) > MAX_JSON_BYTES:  # uvicorn's ws_max_size closes the connection first when it is set
                await websocket.send_json(
                    ApiError(413, "body", f"a request may be at most {MAX_JSON_BYTES} bytes").to_json()
                )
                continue
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
                lead = _lead(body.pop("lead", None) if isinstance(body, dict) else None)
                composer, request = state.prepare(body)
                with state.jobs.slot():
                    gone = await _compose(websocket, state, composer, request, lead)
            except ApiError as exc:
                await websocket.send_json(exc.to_json())
                continue
            if gone:
                return
    except WebSocketDisconnect:
        return


def _lead(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_LEAD:
        raise ApiError(
            422, "lead", f"lead is the seconds of music to compose ahead of playback: a number in (0, {MAX_LEAD:g}]"
        )
    return float(value)


def _music_end(chunk: Chunk) -> float | None:
    """Where a chunk ends in the music, in seconds (None for text, which has no clock)."""
    if isinstance(chunk, Measure):
        return (chunk.index + 1) * chunk.beats * 60.0 / chunk.tempo
    if isinstance(chunk, AudioBlock):
        return (chunk.sample + len(chunk.samples)) / chunk.sample_rate
    return None


async def _compose(
    websocket: WebSocket, state: ServerState, composer: Composer, request: ComposeRequest, lead: float | None
) -> bool:
    """Stream one piece; True when the client went away (so the connection is done).

    The composer runs on a thread of its own (`streams.StreamRunner`), one chunk per credit. With `lead`,
    composing stays at most that many seconds of music ahead of the listener's playback (counted from the
    first chunk), as a player wants: no flood of notes it cannot use yet, and no work wasted on a piece the
    listener stops early. Without it, chunks go out as fast as they are made.
    """
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
                ApiError(409, "type", 'a piece is being composed: send {"type": "stop"} first').to_json()
            )

    listener = asyncio.create_task(listen())
    began = time.perf_counter()
    chunks: list[Chunk] = []
    runner = state.runner(composer, request)
    first_sent = 0.0
    failure: ApiError | None = None
    finished = False
    stopping = asyncio.create_task(stop.wait())
    try:
        await websocket.send_json({"type": "start", "request": state.public_request(request)})
        runner.start().want()
        while not stop.is_set():
            pull = asyncio.ensure_future(runner.next())
            await asyncio.wait({pull, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not pull.done():
                pull.cancel()
                break
            event = pull.result()
            if event[0] == "end":
                break
            if event[0] == "error":  # a composer that fails ends this piece, not the server
                failure = state.client_error(event[1])
                break
            _, chunk, text, extras = event
            state.jobs.count_chunk()
            chunks.append(chunk)
            end = _music_end(chunk)
            ahead = 0.0
            if lead is not None and end is not None:
                first_sent = first_sent or time.perf_counter()
                ahead = end - (time.perf_counter() - first_sent) - lead
            if ahead <= 0:
                runner.want()  # the next chunk is made while this one goes out
            try:
                await websocket.send_text(text)
                for extra in extras:
                    await websocket.send_text(extra)
            except (WebSocketDisconnect, RuntimeError):
                gone = True
                break
            if ahead > 0:
                # Wait for the listener to catch up, but wake at once for a stop or a closed connection.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=ahead)
                runner.want()
        finished = True
    finally:
        # This runs without awaiting, so it also runs when the server cancels this task (client gone).
        listener.cancel()
        stopping.cancel()
        runner.stop()
        if not finished or gone or (stop.is_set() and failure is None):
            state.jobs.count_cancel()
    await asyncio.wait({listener})  # let the cancelled listener finish before anyone else reads the socket
    if gone:
        return True
    if failure is not None:
        await websocket.send_json(failure.to_json())
        return False
    stopped = stop.is_set()
    try:
        piece = await state.scheduler.run(len(chunks), composer.piece, request, chunks)
        piece_id = await state.scheduler.run(len(chunks), state.pieces.add, piece)  # on disk before the id goes out
    except OSError as exc:  # a full or read-only disk: this piece has no id to give, the connection goes on
        await websocket.send_json(ApiError(500, "server", f"the piece could not be saved: {exc.strerror}").to_json())
        return False
    except Exception as exc:
        log.exception("building the piece of %s failed", request.model)
        await websocket.send_json(state.client_error(exc).to_json())
        return False
    await websocket.send_json(
        {
            "type": "end",
            "piece": piece_id,
            "chunks": len(chunks),
            "stopped": stopped,
            "seconds": round(time.perf_counter() - began, 4),
            "provenance": public_provenance(piece),
            "summary": state.pieces.summary(piece_id),
        }
    )
    return False
