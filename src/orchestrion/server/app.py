"""Build the FastAPI app: routers, static client, error answers, and models loaded once in `lifespan`."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrion.server import routes_api, routes_stream
from orchestrion.server.routes_api import MAX_UPLOAD_BYTES
from orchestrion.server.scheduler import ChunkScheduler
from orchestrion.server.state import ApiError, JobLimiter, PieceStore, PromptStore, ServerState, api_error_from

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_JOBS = 64  # above the 50 concurrent streams the load benchmark asks of one 2-core machine
DEFAULT_WORKERS = 4  # composition threads; chunks of all jobs interleave on them, so a few suffice
MAX_JSON_BYTES = 2**20

log = logging.getLogger("orchestrion.server")


def load_models(refs: list[str]) -> tuple[dict, dict, dict]:
    """Load each model once; one that fails is reported (and shown as unavailable), the rest are served."""
    from orchestrion.composers import BUILTIN_MODELS, load_composer

    composers, descriptions, errors = {}, {}, {}
    for ref in refs:
        try:
            composers[ref] = load_composer(ref)
            descriptions[ref] = BUILTIN_MODELS.get(ref.removeprefix("builtin:"), f"a model trained with orchestrion ({ref})")
        except Exception as exc:  # a broken model must not keep the others from being served
            log.warning("could not load %s: %s", ref, exc)
            errors[ref] = str(exc)
    return composers, descriptions, errors


def create_app(
    models: list[str] | None = None,
    *,
    max_jobs: int = DEFAULT_MAX_JOBS,
    workers: int = DEFAULT_WORKERS,
    prompt_dir: str | Path | None = None,
    max_upload_bytes: dict[str, int] | None = None,
) -> FastAPI:
    """The web app. `models` defaults to every built-in model present; they load when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from orchestrion.composers import available_builtins

        refs = list(models) if models is not None else available_builtins()
        composers, descriptions, errors = load_models(refs)
        owned_dir = prompt_dir is None
        directory = Path(tempfile.mkdtemp(prefix="orchestrion-prompts-")) if owned_dir else Path(prompt_dir)
        directory.mkdir(parents=True, exist_ok=True)
        scheduler = ChunkScheduler(workers)
        app.state.hub = ServerState(
            composers=composers,
            descriptions=descriptions,
            load_errors=errors,
            jobs=JobLimiter(max_jobs),
            scheduler=scheduler,
            prompts=PromptStore(directory),
            pieces=PieceStore(),
            max_upload_bytes=dict(max_upload_bytes or MAX_UPLOAD_BYTES),
        )
        try:
            yield
        finally:
            scheduler.shutdown()
            if owned_dir:
                shutil.rmtree(directory, ignore_errors=True)

    from orchestrion import __version__

    # Bodies are bounded before they are read: JSON requests are small; uploads have their own route limit.
    app = FastAPI(title="orchestrion", version=__version__, lifespan=lifespan, max_body_size=MAX_JSON_BYTES)
    app.include_router(routes_api.router)
    app.include_router(routes_stream.router)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            field = "file" if request.url.path.endswith("/prompts") else "body"
            err = ApiError(413, field, "the request is too large (see upload_limits in GET /api/models)")
        else:
            err = ApiError(exc.status_code, "request", str(exc.detail))
        return JSONResponse(err.to_json(), status_code=err.status, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _fastapi_422(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query")]
        field = ".".join(loc) or "request"
        return JSONResponse(ApiError(422, field, err.get("msg", "invalid value")).to_json(), status_code=422)

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception) -> JSONResponse:
        # Whatever goes wrong in one request is that request's 500 (or 4xx for our own types), never the server's end.
        log.exception("error answering %s", request.url.path)
        err = api_error_from(exc)
        return JSONResponse(err.to_json(), status_code=err.status)

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
