"""The web app: a FastAPI server that streams compositions over a websocket to a static browser client.

Layout (FastAPI's "bigger applications"): `app.py` builds the app and loads every model once in its
lifespan; `state.py` holds what the routes share (models, the job limiter, prompt and piece stores);
`stores.py` keeps prompts and pieces on disk, `scheduler.py` runs composition on worker threads and
`errors.py` turns errors into HTTP answers; `routes_api.py` is the REST API, `routes_stream.py` the
websocket; `formats.py` turns a piece into MIDI, WAV, ABC, SVG or JSON; `static/` is the client (plain
HTML/CSS/JS, no build step).

What it may import: the Composer interface, requests and errors, core's rendering, and models only
through `orchestrion.registry` (never a system package's model modules). Nothing here is imported by
`orchestrion --help`: `orchestrion serve` imports it when it runs (ruff's TID253 keeps it that way).
"""

from __future__ import annotations

from orchestrion.server.app import create_app

__all__ = ["create_app"]
