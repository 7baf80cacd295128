"""The server's answers to a client that asked for something it cannot have (HTTP status + field + message)."""

from __future__ import annotations

import re

from pydantic import ValidationError

from orchestrion.errors import BadInput, InvalidRequest, ModelNotFound, OrchestrionError
from orchestrion.requests import first_error

PROMPT_ID = re.compile(r"^[0-9a-f]{16}$")
PIECE_ID = re.compile(r"^[0-9a-f]{16}$")


class ApiError(Exception):
    """An answer to the client: HTTP `status`, the offending `field` and a message saying what to do."""

    def __init__(self, status: int, field: str, message: str, *, busy: bool = False):
        self.status = status
        self.field = field
        self.message = message
        self.busy = busy
        super().__init__(f"{field}: {message}")

    def to_json(self) -> dict:
        body = {"type": "error", "field": self.field, "message": self.message}
        if self.busy:
            body["busy"] = True
        return body


def api_error_from(exc: Exception) -> ApiError:
    """Map our own error types (and pydantic's) to the HTTP answer a client should get."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError | InvalidRequest):
        return ApiError(422, *first_error(exc))
    if isinstance(exc, ModelNotFound):
        return ApiError(422, "model", str(exc))
    if isinstance(exc, BadInput):
        return ApiError(422, "prompt", str(exc))
    if isinstance(exc, OrchestrionError):
        return ApiError(500, "server", str(exc))
    return ApiError(500, "server", f"internal error ({type(exc).__name__}); the server is still running")
