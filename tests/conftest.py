"""Shared fixtures and marker handling.

`gpu` tests are skipped without CUDA and `browser` tests without Debian's chromium, so that the
default suite passes on any machine; `slow` tests are deselected by default (see pyproject.toml).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from orchestrion.core.engine import PRIVATE_RAY_ENV

# Any Ray a test starts in this process stays on the loopback interface (Ray reads this when first imported).
os.environ.update(PRIVATE_RAY_ENV)
# No test writes to the user's real cache or data folders: every corpus conversion, the server's default
# store and every subprocess a test starts (they inherit the environment) use one folder of this session.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="orchestrion-tests-"))
os.environ["ORCHESTRION_CACHE"] = str(SESSION_HOME / "cache")
os.environ["XDG_DATA_HOME"] = str(SESSION_HOME / "data")

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = False
    if any("gpu" in item.keywords for item in items):
        try:
            import torch

            has_cuda = torch.cuda.is_available()
        except ImportError:
            has_cuda = False
    has_chromium = shutil.which("chromium") is not None or Path("/usr/bin/chromium").exists()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))
        if "browser" in item.keywords and not has_chromium:
            item.add_marker(pytest.mark.skip(reason="chromium is not installed (apt-get install chromium)"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def corpus_cache() -> Path:
    """The session's private corpus cache (the user's ~/.cache is never touched)."""
    return Path(os.environ["ORCHESTRION_CACHE"])


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def chorale_files(corpus_cache: Path) -> list[Path]:
    """The first four Bach chorales as MIDI (soprano/alto/tenor/bass tracks), converted once per session."""
    from orchestrion.core.corpora import corpus_files

    return corpus_files("bach-chorales", limit=4, workers=1, cache_dir=corpus_cache)
