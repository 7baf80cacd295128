"""The web client in Debian's chromium (headless, driven by Playwright) against a real `orchestrion serve`.

Set ORCHESTRION_DOCS_SCREENSHOT=1 to also refresh docs/images/web-app.png (kept out of normal runs so that
tests do not rewrite a committed file).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

MODEL = "builtin:markov"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "web-app.png"


def _have_model() -> bool:
    from orchestrion.registry import available_builtins

    return MODEL in available_builtins()


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not _have_model(), reason=f"{MODEL} is not shipped yet (src/orchestrion/builtin/markov)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    orchestrion = Path(sys.executable).with_name("orchestrion")
    data_dir = tmp_path_factory.mktemp("data")  # not the user's own ~/.local/share/orchestrion/server
    proc = subprocess.Popen(
        [str(orchestrion), "serve", "--port", str(port), "--model", MODEL, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"orchestrion serve did not start:\n{out}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def compose_in_page(page, url: str, bars: int = 8) -> dict:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("window.orchestrion && window.orchestrion.models.length > 0", timeout=15_000)
    page.select_option("#model", MODEL)
    page.fill("input[name=bars]", str(bars))
    page.fill("input[name=seed]", "3")
    page.click("#generate")
    page.wait_for_function("window.orchestrion.pieces.length > 0", timeout=30_000)
    page.wait_for_timeout(600)  # let a few notes sound and the playhead move before the screenshot
    seen = page.evaluate(
        """() => ({
            measures: window.orchestrion.measures,
            rollMeasures: Number(document.getElementById('roll').dataset.measures),
            playbackStarted: window.orchestrion.playbackStarted,
            audioState: window.orchestrion.audioState,
            status: document.getElementById('status').textContent,
            downloads: !document.getElementById('downloads').hidden,
            sessionPieces: document.querySelectorAll('#pieces li.piece').length,
            overflow: document.documentElement.scrollWidth - window.innerWidth,
        })"""
    )
    seen["errors"] = errors
    return seen


def test_generate_eight_measures_streams_draws_and_plays(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    seen = compose_in_page(page, server)
    assert seen["errors"] == []
    assert seen["measures"] == 8 and seen["rollMeasures"] == 8, seen
    assert seen["playbackStarted"] and seen["audioState"] == "running", seen
    assert seen["status"].startswith("done"), seen
    assert seen["downloads"] and seen["sessionPieces"] == 1
    shot = tmp_path / "web-app.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("ORCHESTRION_DOCS_SCREENSHOT"):
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGE), full_page=True)
        assert DOCS_IMAGE.stat().st_size < 300_000
    # The download link serves the piece that was streamed.
    href = page.get_attribute("#dl-mid", "href")
    assert httpx.get(server + href, timeout=10).content[:4] == b"MThd"
    page.close()


def test_phone_sized_screen(server, browser, tmp_path):
    page = browser.new_page(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    seen = compose_in_page(page, server, bars=4)
    assert seen["errors"] == []
    assert seen["measures"] == 4 and seen["rollMeasures"] == 4
    assert seen["overflow"] <= 0, "the page scrolls sideways on a phone"
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    page.close()
