"""core/render.py and core/tools.py: real FluidSynth audio, matplotlib piano rolls, verovio scores, the tool runner."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from orchestrion.core.music import load_midi
from orchestrion.core.render import (
    VOICE_COLOURS,
    bar_lines,
    render_file,
    render_pianoroll,
    render_spectrogram,
    render_svg,
    render_wav,
    write_wav,
)
from orchestrion.core.tools import find_soundfont, run_tool
from orchestrion.errors import BadInput, ToolFailed, ToolMissing

RMS_FLOOR = 0.01  # a FluidSynth render of real notes sits far above this; silence is 0


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


# ---------------------------------------------------------------------------------------------- audio


def test_render_wav_is_not_silent(fixtures_dir: Path, tmp_path: Path) -> None:
    out = render_wav(fixtures_dir / "multitrack.mid", tmp_path / "multi.wav")
    audio, rate = soundfile.read(str(out), dtype="float32", always_2d=True)
    assert rate == 44100 and audio.shape[1] == 2
    seconds = float(load_midi(fixtures_dir / "multitrack.mid").to("second").end())
    assert audio.shape[0] >= seconds * rate  # the whole piece, and a release tail
    assert rms(audio) > RMS_FLOOR
    # Sound where the notes are: the first and last second both carry signal.
    assert rms(audio[:rate]) > RMS_FLOOR and rms(audio[int((seconds - 1) * rate) : int(seconds * rate)]) > RMS_FLOOR


def test_render_wav_16k_mono_from_a_score(chorale_files: list[Path], tmp_path: Path) -> None:
    score = load_midi(chorale_files[1])
    out = render_wav(score, tmp_path / "chorale.wav", sample_rate=16000, mono=True)
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels) == (16000, 1)
    audio, _ = soundfile.read(str(out), dtype="float32")
    assert rms(audio) > RMS_FLOOR


def test_drums_render_on_channel_ten(fixtures_dir: Path, tmp_path: Path) -> None:
    audio, _ = soundfile.read(str(render_wav(fixtures_dir / "drums.mid", tmp_path / "d.wav")), dtype="float32")
    assert rms(audio) > RMS_FLOOR


def test_render_wav_is_deterministic(fixtures_dir: Path, tmp_path: Path) -> None:
    a = render_wav(fixtures_dir / "one_track.mid", tmp_path / "a.wav", sample_rate=16000)
    b = render_wav(fixtures_dir / "one_track.mid", tmp_path / "b.wav", sample_rate=16000)
    assert a.read_bytes() == b.read_bytes()


def test_render_wav_bad_input(fixtures_dir: Path, tmp_path: Path) -> None:
    for name in ("truncated.mid", "empty.mid", "no_notes.mid"):
        with pytest.raises(BadInput, match=name):
            render_wav(fixtures_dir / name, tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()
    with pytest.raises(BadInput, match="sample rate"):
        render_wav(fixtures_dir / "one_track.mid", tmp_path / "x.wav", sample_rate=100)


def test_write_wav_round_trip(tmp_path: Path) -> None:
    t = np.arange(1600) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = write_wav(tmp_path / "tone.wav", tone, 16000)
    audio, rate = soundfile.read(str(path), dtype="float32")
    assert rate == 16000 and np.max(np.abs(audio - tone)) < 1e-3
    with pytest.raises(BadInput):
        write_wav(tmp_path / "bad.wav", np.zeros((2, 2, 2)), 16000)


def test_short_wav_fixture_is_audio(fixtures_dir: Path) -> None:
    audio, rate = soundfile.read(str(fixtures_dir / "short.wav"), dtype="float32")
    assert rate == 16000 and audio.ndim == 1 and rms(audio) > RMS_FLOOR


# ----------------------------------------------------------------------------------------- piano roll


def _colour_pixels(png: Path, hex_colour: str) -> int:
    import matplotlib.image

    image = matplotlib.image.imread(str(png))[..., :3]  # (H, W, 3) floats
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.sum(np.all(np.abs(image - rgb) < 0.02, axis=-1)))


def test_pianoroll_colours_each_voice(chorale_files: list[Path], tmp_path: Path) -> None:
    png = render_pianoroll(chorale_files[0], tmp_path / "roll.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    for voice, colour in VOICE_COLOURS.items():
        assert _colour_pixels(png, colour) > 200, f"no {voice} notes drawn"


def test_pianoroll_of_a_multitrack_file(fixtures_dir: Path, tmp_path: Path) -> None:
    png = render_pianoroll(fixtures_dir / "multitrack.mid", tmp_path / "multi.png")
    assert png.stat().st_size > 5_000
    with pytest.raises(BadInput, match="no notes"):
        render_pianoroll(fixtures_dir / "no_notes.mid", tmp_path / "none.png")


def test_bar_lines_follow_meter_changes(fixtures_dir: Path) -> None:
    score = load_midi(fixtures_dir / "multitrack.mid")  # 4/4, 2/4, 4/4, 4/4 at 480 ticks per quarter
    assert bar_lines(score).tolist() == [0, 1920, 2880, 4800, 6720]


def test_spectrogram_of_audio(fixtures_dir: Path, tmp_path: Path) -> None:
    png = render_spectrogram(fixtures_dir / "short.wav", tmp_path / "spec.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    with pytest.raises(BadInput, match="256 samples"):
        render_spectrogram(np.zeros(10), tmp_path / "tiny.png", sample_rate=16000)


# --------------------------------------------------------------------------------------------- scores


def test_svg_from_abc(fixtures_dir: Path, tmp_path: Path) -> None:
    svg = render_svg(fixtures_dir / "tune.abc", tmp_path / "tune.svg")
    text = svg.read_text()
    assert text.lstrip().startswith("<svg") or "<svg" in text[:500]
    assert text.count('class="note"') >= 30  # the reel has 60 notes


def test_svg_from_midi(fixtures_dir: Path, tmp_path: Path) -> None:
    text = render_svg(fixtures_dir / "one_track.mid", tmp_path / "one.svg").read_text()
    assert text.count('class="note"') == 8


def _satb_midi(path: Path, *, title: str | None = None, key: tuple[int, int] | None = None) -> Path:
    import symusic

    from orchestrion.core.music import save_midi, score_from_notes

    lines = {"Soprano": [72, 74, 76, 74], "Alto": [67, 67, 67, 65], "Tenor": [64, 62, 60, 59], "Bass": [48, 43, 45, 43]}
    score = score_from_notes(
        [{"name": n, "program": 52, "pitch": p, "start": [0, 4, 8, 12], "duration": [4] * 4} for n, p in lines.items()],
        tpq=4,
    )
    if title:
        score.markers.append(symusic.TextMeta(0, f"Title: {title}"))
    if key:
        score.key_signatures.append(symusic.KeySignature(0, *key))
    return save_midi(score, path)


def test_svg_of_a_chorale_has_its_title_key_and_voice_clefs(tmp_path: Path) -> None:
    text = render_svg(_satb_midi(tmp_path / "c.mid", title="Chorale in D", key=(2, 0)), tmp_path / "c.svg").read_text()
    assert "Chorale in D" in text and "Music21 Fragment" not in text
    assert text.count('class="keySig"') == 4 and text.count('class="keyAccid"') == 8  # two sharps on each staff
    clefs = re.findall(r'xlink:href="#(E05[02]|E062)-', text)
    assert clefs == ["E050", "E050", "E052", "E062"]  # treble, treble, treble with an 8 below (tenor), bass
    # without a title or a key signature: no "Music21 Fragment", and the estimated key's signature
    text = render_svg(_satb_midi(tmp_path / "u.mid"), tmp_path / "u.svg").read_text()
    assert "Music21 Fragment" not in text and text.count('class="keySig"') == 4
    text = render_svg(_satb_midi(tmp_path / "u.mid"), tmp_path / "t.svg", title="Given").read_text()
    assert "Given" in text


def test_svg_bad_input(fixtures_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not_midi.mid"):
        render_svg(fixtures_dir / "not_midi.mid", tmp_path / "x.svg")
    (tmp_path / "bad.abc").write_text("this is no tune\n")
    with pytest.raises(BadInput, match="bad.abc"):
        render_svg(tmp_path / "bad.abc", tmp_path / "x.svg")


def test_render_file_abc_to_all_three(fixtures_dir: Path, tmp_path: Path) -> None:
    written = render_file(
        fixtures_dir / "tune.abc",
        wav=tmp_path / "t.wav",
        png=tmp_path / "t.png",
        svg=tmp_path / "t.svg",
        sample_rate=22050,
    )
    assert written == [tmp_path / "t.wav", tmp_path / "t.png", tmp_path / "t.svg"]
    audio, rate = soundfile.read(str(tmp_path / "t.wav"), dtype="float32")
    assert rate == 22050 and rms(audio) > RMS_FLOOR
    with pytest.raises(BadInput, match="cannot render"):
        render_file(fixtures_dir / "short.wav", png=tmp_path / "x.png")


# ---------------------------------------------------------------------------------------------- tools


def test_run_tool() -> None:
    assert run_tool(["echo", "hi"], timeout=10).stdout == b"hi\n"
    assert run_tool(["cat"], timeout=10, input=b"abc").stdout == b"abc"
    with pytest.raises(ToolMissing, match="apt-get install"):
        run_tool(["orchestrion-no-such-tool"], timeout=5)
    with pytest.raises(ToolFailed, match="status 1"):
        run_tool(["sh", "-c", "echo broken >&2; exit 1"], timeout=5)
    with pytest.raises(ToolFailed, match="within"):
        run_tool(["sleep", "5"], timeout=0.3)
    assert run_tool(["false"], timeout=5, check=False).returncode == 1


def test_find_soundfont(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert find_soundfont().suffix in (".sf2", ".sf3")
    monkeypatch.setenv("ORCHESTRION_SOUNDFONT", str(tmp_path / "none.sf2"))
    with pytest.raises(BadInput, match="ORCHESTRION_SOUNDFONT"):
        find_soundfont()


# ----------------------------------------------------------------------------------------------- demo


def test_demo_chorale(
    chorale_files: list[Path], corpus_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrion.demo import demo_chorale

    monkeypatch.setenv("ORCHESTRION_CACHE", str(corpus_cache))  # bwv1.6 is already converted there
    written = demo_chorale(tmp_path)
    assert [p.suffix for p in written] == [".mid", ".wav", ".png", ".musicxml", ".svg"]
    audio, _ = soundfile.read(str(written[1]), dtype="float32")
    assert rms(audio) > RMS_FLOOR
    svg = written[-1].read_text()
    assert svg.count('class="staff"') >= 4 and svg.count('class="note"') > 200  # four voices, the whole chorale
