"""The REST API: health, models, compose, prompt upload (finished pieces are in `routes_pieces.py`)."""

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
from orchestrion.server.catalog import describe, prompt_kinds
from orchestrion.server.errors import ApiError
from orchestrion.server.formats import FORMATS, pick_format
from orchestrion.server.routes_pieces import piece_response
from orchestrion.server.security import is_json
from orchestrion.server.state import ServerState
from orchestrion.server.streams import StreamRunner, collect

router = APIRouter(prefix="/api")

MAX_UPLOAD_BYTES = {".mid": 2 * 2**20, ".abc": 256 * 2**10, ".wav": 16 * 2**20}
MAX_PROMPT_SECONDS = 60.0  # a longer WAV prompt is refused: the audio model continues from its last seconds only
MULTIPART_SLACK = 64 * 2**10  # form boundaries and headers around the file
UPLOAD_SUFFIXES = {".mid": ".mid", ".midi": ".mid", ".abc": ".abc", ".txt": ".abc", ".wav": ".wav", ".wave": ".wav"}
KIND_NAMES = {"mid": "a MIDI file", "abc": "an ABC tune", "wav": "a WAV recording"}


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
        "streams": StreamRunner.live,
        "pieces": len(state.pieces),
        "shared_steps": {ref: stats() for ref, stats in state.shared.items()},
    }


@router.get("/models")
async def models(request: Request) -> dict:
    """Each served model with the fields the page shows, their defaults, limits, choices and help
    (`catalog.describe`, from Composer.options()), and the request's own limits."""
    state = hub(request)
    limits = request_limits(ComposeRequest.model_json_schema())
    listing = [
        describe(ref, composer, state.descriptions.get(ref, ""), limits) for ref, composer in state.composers.items()
    ]
    return {
        "models": listing,
        "unavailable": [{"ref": ref, "error": err} for ref, err in state.load_errors.items()],
        "limits": limits,
        "request_schema": ComposeRequest.model_json_schema(),
        "formats": list(FORMATS),
        "upload_limits": state.max_upload_bytes,
        "upload_max_seconds": MAX_PROMPT_SECONDS,
    }


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
    if not is_json(request.headers.get("content-type")):
        # Another site's page can post text/plain or a form without asking first; it cannot post JSON.
        raise ApiError(415, "body", "send the request as JSON, with the header Content-Type: application/json")
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
        try:
            chunks = await collect(state.runner(composer, req))
            piece = await state.scheduler.run(0, composer.piece, req, chunks)
        except ApiError:
            raise
        except Exception as exc:  # logged by the stream; the client gets a message without server paths
            raise state.client_error(exc) from exc
        # On disk before its id goes out; the answer is made from what was stored, so it is byte for byte what
        # GET /api/pieces/{id} serves, now or after a restart.
        piece_id = await state.scheduler.run(0, state.pieces.add, piece)
        return await piece_response(state, piece_id, fmt)


@router.post("/prompts", max_body_size=max(MAX_UPLOAD_BYTES.values()) + MULTIPART_SLACK)
async def upload_prompt(request: Request, file: UploadFile, model: str | None = None) -> JSONResponse:
    """Upload a prompt (MIDI, ABC or WAV) within its size limit; answer its server-side id.

    With `?model=REF` the prompt is checked against that model now (the kind of file it continues, and a
    request with this prompt), so a wrong file is refused at once rather than when Generate is pressed.
    """
    state = hub(request)
    name = Path(file.filename or "upload").name[:120]
    suffix = UPLOAD_SUFFIXES.get(Path(name).suffix.lower())
    if suffix is None:
        raise ApiError(415, "file", f"{name}: unknown prompt type; upload a MIDI (.mid), ABC (.abc) or WAV (.wav) file")
    kind = suffix.lstrip(".")
    if model is not None:
        composer = state.composers.get(model)
        if composer is None:
            raise ApiError(422, "model", f"model {model[:64]!r} is not served here")
        kinds = prompt_kinds(composer)
        if kind not in kinds:
            takes = " or ".join(f"{KIND_NAMES[k]} (.{k})" for k in kinds)
            continues = f"continues {takes}" if kinds else "takes no prompt"
            raise ApiError(422, "file", f"{name}: {model} {continues}, not {KIND_NAMES[kind]}")
    limit = state.max_upload_bytes[suffix]
    # Read one byte past the limit so an oversized upload is refused without holding all of it.
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "file", f"{name}: the file is over the {_size(limit)} limit for {suffix} prompts")
    info = await state.scheduler.run(0, check_prompt, data, suffix, name)
    prompt_id = await state.scheduler.run(0, state.prompts.add, data, suffix)  # fsync: off the event loop
    if model is not None:
        try:
            await state.scheduler.run(0, state.prepare, {"model": model, "prompt": prompt_id})
        except ApiError as exc:
            state.prompts.discard(prompt_id)
            raise ApiError(422, "file", f"{name}: {exc.message}") from exc
    return JSONResponse({"id": prompt_id, "name": name, "kind": kind, "bytes": len(data), **info}, 201)


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
