"""Finished pieces: the history, each piece in any format (with HTTP ranges), a piece as a new prompt.

    GET  /api/pieces                   the pieces kept (newest first, at most 128): what the page's history lists
    GET  /api/pieces/{id}?format=F     the piece as mid, wav, abc, svg or json; `Range: bytes=...` answered
                                       with 206, so an audio player can seek
    POST /api/pieces/{id}/prompt       the piece stored as a prompt of its own kind ("continue this")
    GET  /piece/{id}                   the page, opened on that piece

Rendered files (FluidSynth's WAV, verovio's SVG) are kept in a small cache: a player that seeks asks for
the same file many times.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from orchestrion.core.music import midi_bytes
from orchestrion.server.errors import PIECE_ID, ApiError
from orchestrion.server.formats import FORMATS, pick_format, piece_json, render_piece
from orchestrion.server.state import ServerState

router = APIRouter()
INDEX = Path(__file__).resolve().parent / "static" / "index.html"
MAX_PROMPT_SECONDS = 60.0
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def hub(request: Request) -> ServerState:
    return request.app.state.hub


@router.get("/api/pieces")
async def list_pieces(request: Request, limit: int = 128) -> dict:
    return {"pieces": hub(request).pieces.listing(max(0, min(limit, 1024)))}


@router.get("/api/pieces/{piece_id}")
async def get_piece(request: Request, piece_id: str, format: str | None = None) -> Response:
    """A piece made earlier (streamed or composed), in any format: what the page's links and players use."""
    state = hub(request)
    fmt = pick_format(format, request.headers.get("accept"))
    return await piece_response(state, piece_id, fmt, request.headers.get("range"))


async def piece_response(state: ServerState, piece_id: str, fmt: str, byte_range: str | None = None) -> Response:
    if fmt == "json":
        piece = await state.scheduler.run(0, state.pieces.get, piece_id)
        body = await state.scheduler.run(0, piece_json, piece, piece_id)
        body["summary"] = state.pieces.summary(piece_id)
        return JSONResponse(body)
    data = state.renders.get(piece_id, fmt)
    if data is None:
        piece = await state.scheduler.run(0, state.pieces.get, piece_id)
        data = await state.scheduler.run(0, render_piece, piece, fmt)
        state.renders.put(piece_id, fmt, data)
    headers = {
        "Content-Disposition": f'attachment; filename="orchestrion-{piece_id}.{fmt}"',
        "X-Piece-Id": piece_id,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=86400, immutable",  # a piece never changes
    }
    if byte_range is None:
        return Response(data, media_type=FORMATS[fmt], headers=headers)
    span = _span(byte_range, len(data))
    if span is None:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}", "Accept-Ranges": "bytes"})
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start : end + 1], status_code=206, media_type=FORMATS[fmt], headers=headers)


def _span(header: str, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range (a suffix `-n` or an open `a-`) as inclusive offsets, or None if unsatisfiable."""
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None or size == 0 or match[0] == "bytes=-":
        return None
    first, last = match[1], match[2]
    if first == "":  # the last n bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n > 0 else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


@router.post("/api/pieces/{piece_id}/prompt")
async def piece_as_prompt(request: Request, piece_id: str) -> JSONResponse:
    """Store a piece as a prompt of the kind its model continues, for "continue this"."""
    state = hub(request)
    piece = await state.scheduler.run(0, state.pieces.get, piece_id)
    if piece.abc is not None:
        data, suffix = piece.abc.encode(), ".abc"
    elif piece.score is not None:
        data, suffix = midi_bytes(piece.score)[0], ".mid"
    elif piece.audio is not None:
        audio = piece.audio[-int(MAX_PROMPT_SECONDS * piece.sample_rate) :]
        data, suffix = _pcm_wav(audio, piece.sample_rate), ".wav"
    else:
        raise ApiError(422, "piece", "this piece is empty")
    prompt_id = await state.scheduler.run(0, state.prompts.add, data, suffix)
    return JSONResponse(
        {"id": prompt_id, "name": f"piece {piece_id}", "kind": suffix.lstrip("."), "bytes": len(data)}, 201
    )


def _pcm_wav(audio: object, sample_rate: int) -> bytes:
    import io

    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@router.get("/piece/{piece_id}", include_in_schema=False)
async def piece_page(piece_id: str) -> FileResponse:
    """The page itself: it reads the id from its address and opens that piece."""
    if not PIECE_ID.match(piece_id):
        raise ApiError(404, "piece", "no such piece")
    return FileResponse(INDEX, media_type="text/html")
