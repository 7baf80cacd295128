"""Chorale infill and keep-tracks through the web server, end to end: a composed chorale becomes a prompt, then
one of its bars is composed again (the other bars kept note for note) or one of its voices is kept while the
others are composed anew, with the real builtin:chorales model."""

from __future__ import annotations

import pytest

MODEL = "builtin:chorales"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from orchestrion.server.app import create_app

    data = tmp_path_factory.mktemp("data")
    with TestClient(create_app([MODEL], max_jobs=2, data_dir=data)) as c:
        yield c


@pytest.fixture(scope="module")
def prompt(client) -> tuple[str, dict]:
    """A 4-bar chorale the server composed, and its id as a prompt."""
    r = client.post("/api/compose", json={"model": MODEL, "bars": 4, "seed": 5})
    assert r.status_code == 200, r.text
    piece = r.json()
    r = client.post(f"/api/pieces/{piece['id']}/prompt")
    assert r.status_code == 201, r.text
    return r.json()["id"], piece


def notes_by(piece: dict, keep) -> list[tuple]:
    return sorted(
        (n["voice"], n["pitch"], round(n["start"], 3), round(n["duration"], 3)) for n in piece["notes"] if keep(n)
    )


def bar_of(note: dict, beats_per_bar: float = 4.0) -> int:
    return int(note["start"] // beats_per_bar)


def test_infill_composes_the_chosen_bar_and_keeps_the_others(client, prompt):
    prompt_id, original = prompt
    r = client.post("/api/compose", json={"model": MODEL, "prompt": prompt_id, "fill_bars": [2], "seed": 9})
    assert r.status_code == 200, r.text
    filled = r.json()
    assert notes_by(filled, lambda n: bar_of(n) != 2) == notes_by(original, lambda n: bar_of(n) != 2)
    new_bar = notes_by(filled, lambda n: bar_of(n) == 2)
    assert new_bar and new_bar != notes_by(original, lambda n: bar_of(n) == 2)
    # the filled bar keeps every voice in the range it has in the rest of the piece
    for voice in {n["voice"] for n in original["notes"]}:
        pitches = [n["pitch"] for n in original["notes"] if n["voice"] == voice]
        for n in filled["notes"]:
            if n["voice"] == voice and bar_of(n) == 2:
                assert min(pitches) - 7 <= n["pitch"] <= max(pitches) + 7, (voice, n)


def test_keep_tracks_keeps_the_soprano_and_composes_the_rest(client, prompt):
    prompt_id, original = prompt
    r = client.post("/api/compose", json={"model": MODEL, "prompt": prompt_id, "keep_tracks": [0], "seed": 9})
    assert r.status_code == 200, r.text
    kept = r.json()
    assert notes_by(kept, lambda n: n["voice"] == 0) == notes_by(original, lambda n: n["voice"] == 0)
    assert notes_by(kept, lambda n: n["voice"] != 0) != notes_by(original, lambda n: n["voice"] != 0)
    assert {n["voice"] for n in kept["notes"]} == {n["voice"] for n in original["notes"]}


def test_infill_of_a_bar_the_prompt_does_not_have_names_the_field(client, prompt):
    prompt_id, _ = prompt
    r = client.post("/api/compose", json={"model": MODEL, "prompt": prompt_id, "fill_bars": [40]})
    assert r.status_code == 422 and r.json()["field"] == "fill_bars"
