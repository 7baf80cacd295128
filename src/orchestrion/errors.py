"""orchestrion's exception types.

Every error a user can cause derives from `OrchestrionError` and says what went wrong and what to do.
`assert` is kept for internal invariants only.
"""

from __future__ import annotations

from pathlib import Path


class OrchestrionError(Exception):
    """Base class of every error orchestrion raises on purpose."""


class BadInput(OrchestrionError):
    """A file or value that cannot be used: names the file (when there is one) and the reason."""

    def __init__(self, reason: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class InvalidRequest(OrchestrionError):
    """A compose request outside a model's limits; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ToolMissing(OrchestrionError):
    """An external program (fluidsynth, abc2midi, ffmpeg, ...) is not installed."""

    def __init__(self, tool: str, package: str):
        self.tool = tool
        self.package = package
        super().__init__(
            f"'{tool}' is not installed. Install the Debian package '{package}' "
            f"(sudo apt-get install {package}) or run 'make demo', which installs it when run as root."
        )


class ToolFailed(OrchestrionError):
    """An external program ran but failed or timed out."""


class ModelNotFound(OrchestrionError):
    """A model directory or builtin name that does not exist."""
