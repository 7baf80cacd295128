"""The web client in Debian's chromium (headless, driven by Playwright) against a freshly started
`orchestrion serve` with every built-in model.

The default suite runs the quick ones (markov pieces of a few measures: each test takes seconds); the
GPT and audio models end to end are `slow` (`make test-browser` runs them all). axe-core is injected from
tests/server/vendor/ (nothing is downloaded). Set ORCHESTRION_DOCS_SCREENSHOT=1 to also refresh the
screenshots in docs/images/ (kept out of normal runs so that tests do not rewrite committed files).
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

from orchestrion.registry import available_builtins

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "images"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODELS = available_builtins()
# What each model composes in the end-to-end tests: small, so that a test takes seconds to a minute.
SETTINGS = {
    "builtin:markov": {"bars": "4", "seed": "3"},
    "builtin:chorales": {"bars": "4", "candidates": "2", "seed": "3"},
    "builtin:folk": {"seed": "5"},
    "builtin:piano": {"seconds": "2", "seed": "3"},
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif("builtin:markov" not in MODELS, reason="builtin:markov is not shipped"),
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
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(orchestrion), "serve", "--port", str(port), "--data-dir", str(data_dir)], stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"orchestrion serve did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield url
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-4000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
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


def open_page(browser, url: str, path: str = "/", **kw):
    page = browser.new_page(viewport=kw.pop("viewport", {"width": 1280, "height": 900}), **kw)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(url + path)
    page.wait_for_function("window.orchestrion && window.orchestrion.ready", timeout=30_000)
    return page


def settle(page, model: str, **values: str) -> None:
    """Choose a model and fill in its fields (opening 'Sampling and more' when a field is in it)."""
    page.select_option("#model", model)
    for name, value in {**SETTINGS.get(model, {}), **values}.items():
        selector = f"#fields [name={name}]"
        if not page.is_visible(selector):
            page.click("#fields details.advanced summary")
        page.fill(selector, value)


def compose(page, model: str, timeout: float = 60_000, **values: str) -> dict:
    settle(page, model, **values)
    page.click("#generate")
    page.wait_for_function(
        "/^(done|stopped)/.test(document.getElementById('status').textContent) || document.getElementById('error').textContent",
        timeout=timeout,
    )
    page.wait_for_function("!document.getElementById('piece-tools').hidden", timeout=20_000)
    page.wait_for_function(  # the history, fetched again once the piece is stored
        "window.orchestrion.pieces.some((p) => p.id === window.orchestrion.current.id)", timeout=20_000
    )
    return seen(page)


def seen(page) -> dict:
    return page.evaluate(
        """() => ({
            measures: window.orchestrion.measures,
            rollMeasures: Number(document.getElementById('roll').dataset.measures),
            playbackStarted: window.orchestrion.playbackStarted,
            audioState: window.orchestrion.audioState,
            play: document.getElementById('play-state').textContent,
            status: document.getElementById('status').textContent,
            error: document.getElementById('error').textContent,
            summary: document.getElementById('summary').textContent,
            legend: document.getElementById('legend').textContent,
            tools: !document.getElementById('piece-tools').hidden,
            history: document.querySelectorAll('#pieces li.piece').length,
            current: window.orchestrion.current && window.orchestrion.current.id,
            overflow: document.documentElement.scrollWidth - window.innerWidth,
            focus: document.activeElement && document.activeElement.id,
        })"""
    )


def shoot(page, name: str, tmp_path: Path) -> None:
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("ORCHESTRION_DOCS_SCREENSHOT"):
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


def axe_violations(page) -> list[dict]:
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


# ------------------------------------------------------------------------------------------ quick


def test_markov_streams_draws_plays_and_lists_the_piece(server, browser, tmp_path):
    page = open_page(browser, server)
    got = compose(page, "builtin:markov")
    assert page.errors == [] and got["error"] == ""
    assert got["measures"] == 4 and got["rollMeasures"] == 4, got
    assert got["playbackStarted"] and got["audioState"] == "running", got
    assert got["status"].startswith("done") and got["tools"], got
    assert "4 measures" in got["summary"] and "voices" in got["summary"] and got["legend"], got
    assert got["history"] >= 1 and got["focus"] == "generate", got
    page.wait_for_timeout(600)  # a few notes sound and the playhead moves before the screenshot
    shoot(page, "web-app-markov", tmp_path)
    href = page.get_attribute("#dl-mid", "href")
    assert httpx.get(server + href, timeout=10).content[:4] == b"MThd"
    assert page.is_hidden("#dl-abc")  # a markov piece has no ABC text
    page.wait_for_selector("#score svg", timeout=60_000)  # its score, engraved by the server
    page.close()


def test_stop_pause_resume_seek_and_volume_after_composing(server, browser):
    page = open_page(browser, server)
    compose(page, "builtin:markov", bars="8")
    state = "window.orchestrion.player.state"
    page.wait_for_function(f"{state} === 'playing'")
    page.click("#play")
    assert page.evaluate(state) == "paused" and page.text_content("#play-state") == "paused"
    page.click("#play")
    assert page.evaluate(state) == "playing"
    page.evaluate(
        "() => { const s = document.getElementById('seek'); s.value = '6'; s.dispatchEvent(new Event('change')); }"
    )
    assert 5.9 <= page.evaluate("window.orchestrion.player.position()") < 7.5
    page.evaluate(
        "() => { const v = document.getElementById('volume'); v.value = '0.2'; v.dispatchEvent(new Event('input')); }"
    )
    assert page.evaluate("window.orchestrion.player.volume") == 0.2
    page.click("#stop")  # Stop works once composing has ended too
    page.wait_for_timeout(200)
    assert page.evaluate(state) == "stopped" and page.text_content("#play-state") == "stopped"
    assert page.evaluate("window.orchestrion.player.sources.size") == 0
    page.click("#play")
    assert page.evaluate(state) == "playing"
    page.click("#halt")
    assert page.evaluate(state) == "stopped"
    assert page.errors == []
    page.close()


def test_reload_mid_stream_and_switching_model_stop_the_old_piece(server, browser):
    page = open_page(browser, server)
    settle(page, "builtin:markov", bars="32")
    page.click("#generate")
    page.wait_for_function("window.orchestrion.measures >= 1", timeout=30_000)
    page.reload()
    page.wait_for_function("window.orchestrion && window.orchestrion.ready", timeout=30_000)
    deadline = time.monotonic() + 20
    while httpx.get(f"{server}/api/health").json()["jobs"]["active"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the server stopped composing for the page that left
    assert httpx.get(f"{server}/api/health").json()["jobs"]["active"] == 0
    settle(page, "builtin:markov", bars="32")
    page.click("#generate")
    page.wait_for_function("window.orchestrion.measures >= 1", timeout=30_000)
    page.select_option("#model", "builtin:markov-folk" if "builtin:markov-folk" in MODELS else MODELS[0])
    page.wait_for_function("!window.orchestrion.composing", timeout=10_000)
    assert page.evaluate("window.orchestrion.player.state") in ("idle", "stopped")
    assert page.evaluate("window.orchestrion.player.sources.size") == 0
    assert page.errors == []
    page.close()


def test_two_tabs_compose_at_once_and_share_the_history(server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pages = []
    for _ in range(2):
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc, page=page: page.errors.append(str(exc)))
        page.goto(server)
        page.wait_for_function("window.orchestrion && window.orchestrion.ready", timeout=30_000)
        settle(page, "builtin:markov", bars="4")
        pages.append(page)
    for i, page in enumerate(pages):
        page.fill("#fields [name=seed]", str(100 + i))
        page.click("#generate")
    ids = []
    for page in pages:
        page.wait_for_function("/^done/.test(document.getElementById('status').textContent)", timeout=60_000)
        page.wait_for_function("window.orchestrion.current && window.orchestrion.current.id")
        ids.append(page.evaluate("window.orchestrion.current.id"))
    assert ids[0] != ids[1]
    for page in pages:
        page.evaluate("() => window.dispatchEvent(new Event('focus'))")  # a tab brought back lists what the other made
        page.wait_for_function(
            f"() => {ids!r}.every((id) => window.orchestrion.pieces.some((p) => p.id === id))", timeout=10_000
        )
        assert page.errors == []
    context.close()


def test_a_bad_upload_is_refused_at_once_and_says_why(server, browser):
    if "builtin:chorales" not in MODELS:
        pytest.skip("builtin:chorales is not shipped")
    page = open_page(browser, server)
    page.select_option("#model", "builtin:chorales")
    page.set_input_files("#f-prompt", str(FIXTURES / "tune.abc"))  # an ABC tune for a MIDI model
    page.wait_for_function("document.getElementById('error').textContent", timeout=10_000)
    error = page.text_content("#error")
    assert "continues a MIDI file" in error and "tune.abc" in error, error
    page.set_input_files("#f-prompt", str(FIXTURES / "not_midi.mid"))  # the right name, the wrong content
    page.wait_for_function("document.getElementById('error').textContent.includes('not_midi.mid')", timeout=10_000)
    error = page.text_content("#error")
    assert "/tmp" not in error and "/home" not in error and "orchestrion-server" not in error, error
    assert page.evaluate("window.orchestrion.prompt") is None
    assert page.get_attribute("#error", "role") == "alert"
    assert page.errors == []
    page.close()


def test_keyboard_focus_and_no_serious_accessibility_violation(server, browser):
    page = open_page(browser, server)
    settle(page, "builtin:markov", bars="2")
    page.focus("#generate")
    page.keyboard.press("Enter")
    page.wait_for_function("/^done/.test(document.getElementById('status').textContent)", timeout=60_000)
    page.wait_for_function("!document.getElementById('piece-tools').hidden")
    assert page.evaluate("document.activeElement.id") == "generate"  # focus stays on Generate
    page.click("#fields details.advanced summary")  # every control visible
    assert axe_violations(page) == []
    page.click("#theme")  # the other theme too
    assert axe_violations(page) == []
    # Every control and history card can be reached with the Tab key.
    reached = set()
    page.focus("#model")
    for _ in range(120):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.className"))
    assert {"generate", "stop", "play", "seek", "volume", "again", "vary"} <= reached, reached
    assert "open" in reached  # a history card
    page.close()


def test_a_pieces_link_opens_it(server, browser):
    piece = httpx.post(
        f"{server}/api/compose", json={"model": "builtin:markov", "bars": 3, "seed": 9}, timeout=60
    ).json()
    page = open_page(browser, server, f"/piece/{piece['id']}")
    page.wait_for_function("window.orchestrion.current && window.orchestrion.current.id", timeout=10_000)
    got = seen(page)
    assert got["current"] == piece["id"] and got["rollMeasures"] == 3 and "3 measures" in got["summary"], got
    assert page.input_value("#model") == "builtin:markov"
    assert page.input_value("#fields [name=seed]") == "9"  # its settings are in the form: "same seed" is one click
    assert page.errors == []
    page.close()


def test_the_api_reference_works_offline(server, browser):
    page = browser.new_page()
    foreign = []
    page.on(
        "request", lambda r: None if r.url.startswith(server) or r.url.startswith("data:") else foreign.append(r.url)
    )
    page.goto(f"{server}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert foreign == []
    page.close()


def test_phone_sized_screen(server, browser, tmp_path):
    page = open_page(
        browser, server, viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    got = compose(page, "builtin:markov", bars="4")
    assert page.errors == [] and got["measures"] == 4
    assert got["overflow"] <= 0, "the page scrolls sideways on a phone"
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    page.close()


# ------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.parametrize("model", ["builtin:chorales", "builtin:folk", "builtin:piano"])
def test_each_model_end_to_end(server, browser, tmp_path, model):
    if model not in MODELS:
        pytest.skip(f"{model} is not shipped")
    page = open_page(browser, server)
    got = compose(page, model, timeout=300_000)
    assert page.errors == [] and got["error"] == "", got
    assert got["status"].startswith("done") and got["tools"], got
    assert got["playbackStarted"], got
    if model == "builtin:piano":
        assert page.is_visible("#wave") and page.is_hidden("#dl-mid")
    else:
        assert got["rollMeasures"] > 0 and "notes from" in got["summary"], got
        page.wait_for_selector("#score svg", timeout=60_000)
        assert page.is_visible("#dl-svg") and page.is_visible("#dl-mid")
        assert page.is_visible("#dl-abc") == (model == "builtin:folk")
    if model == "builtin:chorales":
        assert got["measures"] == 4 and got["rollMeasures"] == 4, got
    page.wait_for_timeout(600)
    shoot(page, f"web-app-{model.removeprefix('builtin:')}", tmp_path)
    page.close()


def test_same_seed_makes_the_same_piece_and_vary_another(server, browser):
    page = open_page(browser, server)
    compose(page, "builtin:markov", bars="2", seed="21")
    first = page.evaluate("window.orchestrion.current.id")
    page.click("#again")
    page.wait_for_function(
        f"window.orchestrion.current && window.orchestrion.current.id && window.orchestrion.current.id !== {first!r} && !window.orchestrion.composing",
        timeout=60_000,
    )
    again = page.evaluate("window.orchestrion.current.id")
    get = lambda piece: httpx.get(f"{server}/api/pieces/{piece}", params={"format": "mid"}, timeout=30).content  # noqa: E731
    assert get(again) == get(first)
    page.wait_for_function("!document.getElementById('piece-tools').hidden")
    page.click("#vary")
    page.wait_for_function(
        f"window.orchestrion.current && ![{first!r}, {again!r}].includes(window.orchestrion.current.id) && !window.orchestrion.composing",
        timeout=60_000,
    )
    varied = page.evaluate("window.orchestrion.current")
    assert varied["request"]["seed"] != 21 and varied["request"]["bars"] == 2
    assert page.errors == []
    page.close()
