"""The REST API: models, compose, prompt upload, finished pieces, health."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from orchestrion import __version__
from orchestrion.core.music import load_midi, note_count
from orchestrion.errors import BadInput
from orchestrion.requests import ComposeRequest
from orchestrion.server.errors import ApiError
from orchestrion.server.formats import FORMATS, pick_format, piece_json, render_piece
from orchestrion.server.state import ServerState

router = APIRouter(prefix="/api")

# Which request fields the client shows for each kind of model, unless the model's options() lists its own.
DEFAULT_FIELDS = {
    "markov": ["voices", "programs", "key", "tempo", "bars", "temperature", "chord_pull", "seed"],
    "gpt": ["bars", "temperature", "top_p", "top_k", "seed", "prompt"],
    "gpt:abc": ["temperature", "top_p", "top_k", "seed", "title", "meter", "rhythm", "prompt"],
    "sashimi": ["seconds", "temperature", "top_p", "seed", "prompt"],
}
MAX_UPLOAD_BYTES = {".mid": 2 * 2**20, ".abc": 256 * 2**10, ".wav": 16 * 2**20}
MAX_PROMPT_SECONDS = 60.0  # a longer WAV prompt is refused: the audio model continues from its last seconds only
MULTIPART_SLACK = 64 * 2**10  # form boundaries and headers around the file
UPLOAD_SUFFIXES = {".mid": ".mid", ".midi": ".mid", ".abc": ".abc", ".txt": ".abc", ".wav": ".wav", ".wave": ".wav"}


def hub(request: Request) -> ServerState:
    return request.app.state.hub


@router.get("/health")
async def health(request: Request) -> dict:
    state = hub(request)
    return {
        "status": "ok",
        "version": __version__,
        "models": list(state.composers),
        "unavailable": list(state.load_errors),
        "jobs": state.jobs.to_json(),
        "pieces": len(state.pieces),
    }


@router.get("/models")
async def models(request: Request) -> dict:
    """Each served model with its options and limits (from Composer.options()), and the request's limits."""
    state = hub(request)
    listing = []
    for ref, composer in state.composers.items():
        options = composer.options()
        listing.append(
            {
                "ref": ref,
                "kind": composer.kind,
                "description": state.descriptions.get(ref, ""),
                "fields": options.get("fields") or default_fields(composer.kind, options),
                "options": options,
            }
        )
    unavailable = [{"ref": ref, "error": err} for ref, err in state.load_errors.items()]
    return {
        "models": listing,
        "unavailable": unavailable,
        "limits": request_limits(ComposeRequest.model_json_schema()),
        "request_schema": ComposeRequest.model_json_schema(),
        "formats": list(FORMATS),
        "upload_limits": state.max_upload_bytes,
        "upload_max_seconds": MAX_PROMPT_SECONDS,
    }


def default_fields(kind: str, options: dict) -> list[str]:
    """The request fields a model uses, by its kind (and, for GPT, its encoding: ABC tunes have no bar count)."""
    encoding = options.get("encoding")
    return DEFAULT_FIELDS.get(f"{kind}:{encoding}") or DEFAULT_FIELDS.get(kind) or ["seed"]


def request_limits(schema: dict) -> dict:
    """{field: {"min", "max", "default"}} from the request's JSON schema, for the client's inputs."""
    limits = {}
    for name, prop in schema.get("properties", {}).items():
        alternatives = [prop, *prop.get("anyOf", [])]
        entry = {}
        for alt in alternatives:
            for key, out in (
                ("minimum", "min"),
                ("exclusiveMinimum", "min"),
                ("maximum", "max"),
                ("maxLength", "max_length"),
            ):
                if key in alt:
                    entry[out] = alt[key]
        if prop.get("default") is not None:
            entry["default"] = prop["default"]
        if entry:
            limits[name] = entry
    return limits


async def _json_body(request: Request) -> object:
    try:
        raw = await request.body()
    except ClientDisconnect as exc:  # a client that left mid-body: routine, answered (to no one) without a traceback
        raise ApiError(400, "body", "the client disconnected before its request was complete") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(422, "body", f"malformed JSON: {exc}") from exc


@router.post("/compose")
async def compose(request: Request, format: str | None = None) -> Response:
    """Compose one piece from a JSON ComposeRequest; answer MIDI, WAV, ABC, SVG or JSON notes."""
    state = hub(request)
    fmt = pick_format(format, request.headers.get("accept"))
    composer, req = state.prepare(await _json_body(request))
    with state.jobs.slot():
        piece = await state.scheduler.run(0, composer.compose, req)
        # On disk before its id goes out; the answer is made from what was stored, so it is byte for byte what
        # GET /api/pieces/{id} serves, now or after a restart.
        piece_id = await state.scheduler.run(0, state.pieces.add, piece)
        return await _piece_response(state, piece_id, fmt)


@router.get("/pieces/{piece_id}")
async def get_piece(request: Request, piece_id: str, format: str | None = None) -> Response:
    """A piece made earlier (streamed or composed), in any format: what the client's download links use."""
    state = hub(request)
    fmt = pick_format(format, request.headers.get("accept"))
    return await _piece_response(state, piece_id, fmt)


async def _piece_response(state: ServerState, piece_id: str, fmt: str) -> Response:
    piece = await state.scheduler.run(0, state.pieces.get, piece_id)
    if fmt == "json":
        return JSONResponse(await state.scheduler.run(0, piece_json, piece, piece_id))
    data = await state.scheduler.run(0, render_piece, piece, fmt)
    return _file_response(data, fmt, piece_id)


def _file_response(data: bytes, fmt: str, piece_id: str) -> Response:
    return Response(
        data,
        media_type=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="orchestrion-{piece_id}.{fmt}"', "X-Piece-Id": piece_id},
    )


@router.post("/prompts", max_body_size=max(MAX_UPLOAD_BYTES.values()) + MULTIPART_SLACK)
async def upload_prompt(request: Request, file: UploadFile) -> JSONResponse:
    """Upload a prompt (MIDI, ABC or WAV) within its size limit; answer its server-side id."""
    state = hub(request)
    name = file.filename or "upload"
    suffix = UPLOAD_SUFFIXES.get(Path(name).suffix.lower())
    if suffix is None:
        raise ApiError(415, "file", f"{name}: unknown prompt type; upload a MIDI (.mid), ABC (.abc) or WAV (.wav) file")
    limit = state.max_upload_bytes[suffix]
    # Read one byte past the limit so an oversized upload is refused without holding all of it.
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "file", f"{name}: the file is over the {_size(limit)} limit for {suffix} prompts")
    info = await state.scheduler.run(0, check_prompt, data, suffix, name)
    prompt_id = await state.scheduler.run(0, state.prompts.add, data, suffix)  # fsync: off the event loop
    return JSONResponse({"id": prompt_id, "name": name, "kind": suffix.lstrip("."), "bytes": len(data), **info}, 201)


def check_prompt(data: bytes, suffix: str, name: str) -> dict:
    """Refuse what is not what its name says (ApiError 422 naming the file); a little about what it is."""
    if not data:
        raise ApiError(422, "file", f"{name}: the file is empty")
    if suffix == ".mid":
        try:
            score = load_midi(data)
        except BadInput as exc:
            raise ApiError(422, "file", f"{name}: {exc.reason}") from exc
        return {"tracks": len(score.tracks), "notes": note_count(score)}
    if suffix == ".abc":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(422, "file", f"{name}: ABC must be UTF-8 text") from exc
        if not any(line.startswith("K:") for line in text.splitlines()):
            raise ApiError(422, "file", f"{name}: not an ABC tune (no 'K:' key line)")
        return {"tunes": max(1, sum(line.startswith("X:") for line in text.splitlines()))}
    import io

    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            seconds, rate, channels = f.frames / f.samplerate, f.samplerate, f.channels
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise ApiError(422, "file", f"{name}: not a readable WAV file ({exc})") from exc
    if seconds > MAX_PROMPT_SECONDS:
        raise ApiError(
            422, "file", f"{name}: the recording is {seconds:.1f} s long; a WAV prompt may be at most "
            f"{MAX_PROMPT_SECONDS:g} s (trim it to the part the piece should continue from)",
        )  # fmt: skip
    return {"seconds": round(seconds, 3), "sample_rate": rate, "channels": channels}


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} kB"
