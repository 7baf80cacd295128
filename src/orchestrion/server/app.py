"""Build the FastAPI app: routers, static client, error answers, and models loaded once in `lifespan`.

Models that can share their steps (`Composer.share_steps`: GPT) are told to at start, so that concurrent
streams of one model run one batched forward per step (`ORCHESTRION_SHARED_STEPS=0` turns it off, for
comparison). Requests from other sites are refused (`security.py`); the API reference at /docs is served
from the app's own files (Swagger UI in static/vendor/), nothing from another host.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrion import __version__
from orchestrion.errors import OrchestrionError
from orchestrion.registry import BUILTIN_MODELS, available_builtins, load_composer
from orchestrion.server import routes_api, routes_pieces, routes_stream
from orchestrion.server.errors import ApiError, api_error_from
from orchestrion.server.routes_api import MAX_UPLOAD_BYTES
from orchestrion.server.scheduler import ChunkScheduler, PriorityGate
from orchestrion.server.security import SameOriginMiddleware
from orchestrion.server.state import MAX_JSON_BYTES, JobLimiter, ServerState, scrub
from orchestrion.server.stores import PieceStore, PromptStore

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_JOBS = 64  # above the 50 concurrent streams the load benchmark asks of one 2-core machine
DEFAULT_WORKERS = 4  # threads for short jobs, and slots for streams of models that cannot share their steps
DEFAULT_MAX_PIECES = 128
DEFAULT_MAX_PIECE_BYTES = 256 * 2**20  # on disk

log = logging.getLogger("orchestrion.server")


def default_data_dir() -> Path:
    """$ORCHESTRION_DATA, else $XDG_DATA_HOME/orchestrion/server, else ~/.local/share/orchestrion/server."""
    if env := os.environ.get("ORCHESTRION_DATA"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "orchestrion" / "server"


def load_models(refs: list[str]) -> tuple[dict, dict, dict]:
    """Load each model once; one that fails is reported (and shown as unavailable), the rest are served."""
    composers, descriptions, errors = {}, {}, {}
    for ref in refs:
        try:
            composers[ref] = load_composer(ref)
            descriptions[ref] = BUILTIN_MODELS.get(
                ref.removeprefix("builtin:"), f"a model trained with orchestrion ({ref})"
            )
        except Exception as exc:  # a broken model must not keep the others from being served
            log.warning("could not load %s: %s", ref, exc)
            errors[ref] = str(exc)
    return composers, descriptions, errors


def lock_data_dir(root: Path) -> IO[bytes]:
    """Hold `root` for this process (released when the returned file closes, or the process dies).

    A second server on the same directory would take the first one's unfinished writes for crash leftovers and
    delete them; it is refused instead.
    """
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / ".lock", "wb")  # held open for the app's lifetime
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # not POSIX: no lock, one server per directory is then up to the user
        pass
    except OSError as exc:
        handle.close()
        raise OrchestrionError(
            f"{root} is in use by another orchestrion server; stop it or give this one its own --data-dir"
        ) from exc
    return handle


def create_app(
    models: list[str] | None = None,
    *,
    max_jobs: int = DEFAULT_MAX_JOBS,
    workers: int = DEFAULT_WORKERS,
    data_dir: str | Path | None = None,
    prompt_dir: str | Path | None = None,
    max_upload_bytes: dict[str, int] | None = None,
    max_pieces: int = DEFAULT_MAX_PIECES,
    max_piece_bytes: int = DEFAULT_MAX_PIECE_BYTES,
    share_steps: bool | None = None,
) -> FastAPI:
    """The web app. `models` defaults to every built-in model present; they load when the app starts.

    Finished pieces and uploaded prompts live in `data_dir` (`pieces/`, `prompts/`), and a server started
    again on the same directory serves them all. Without one, a temporary directory is used and removed
    when the app stops. `prompt_dir` puts the prompts elsewhere. `share_steps` (default: on, unless
    $ORCHESTRION_SHARED_STEPS is 0) lets concurrent streams of a GPT model run batched steps.
    """
    if share_steps is None:
        share_steps = os.environ.get("ORCHESTRION_SHARED_STEPS", "1") != "0"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        refs = list(models) if models is not None else available_builtins()
        composers, descriptions, errors = load_models(refs)
        owned_dir = data_dir is None
        root = Path(tempfile.mkdtemp(prefix="orchestrion-server-")) if owned_dir else Path(data_dir).expanduser()
        lock = lock_data_dir(root)
        pieces = PieceStore(root / "pieces", capacity=max_pieces, max_bytes=max_piece_bytes)
        prompts = PromptStore(Path(prompt_dir) if prompt_dir is not None else root / "prompts")
        if not owned_dir:
            log.info("data directory %s: %d pieces, %d prompts", root, len(pieces), len(prompts.kinds))
        scheduler = ChunkScheduler(workers)
        shared = {}
        for ref, composer in composers.items():
            stats = composer.share_steps() if share_steps else None
            if stats is not None:
                shared[ref] = stats
        app.state.hub = ServerState(
            composers=composers,
            descriptions=descriptions,
            load_errors=errors,
            jobs=JobLimiter(max_jobs),
            scheduler=scheduler,
            prompts=prompts,
            pieces=pieces,
            max_upload_bytes=dict(max_upload_bytes or MAX_UPLOAD_BYTES),
            gate=PriorityGate(workers),
            shared=shared,
        )
        try:
            yield
        finally:
            scheduler.shutdown()
            lock.close()
            if owned_dir:
                shutil.rmtree(root, ignore_errors=True)

    # Bodies are bounded before they are read: JSON requests are small; uploads have their own route limit.
    app = FastAPI(
        title="orchestrion",
        version=__version__,
        lifespan=lifespan,
        max_body_size=MAX_JSON_BYTES,
        docs_url=None,  # the default pages load their scripts from a CDN: /docs below is served from static/
        redoc_url=None,
    )
    app.add_middleware(SameOriginMiddleware)
    app.include_router(routes_api.router)
    app.include_router(routes_pieces.router)
    app.include_router(routes_stream.router)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="orchestrion API",
            swagger_js_url="/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/vendor/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": False},
        )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            field = "file" if request.url.path.endswith("/prompts") else "body"
            err = ApiError(413, field, "the request is too large (see upload_limits in GET /api/models)")
        else:
            err = ApiError(exc.status_code, "request", scrub(str(exc.detail)))
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
        return JSONResponse({**err.to_json(), "message": scrub(err.message)}, status_code=err.status)

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
