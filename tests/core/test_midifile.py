"""core/midifile.py and the MIDI reading and writing in core/music.py: damaged files read leniently (or refused
with --strict), channels given out properly, meters in file order and the meters that regroup into 4/4."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import symusic

from orchestrion.core.midifile import read_tracks, repair
from orchestrion.core.music import load_midi, midi_bytes, read_midi, save_midi, tiles_four_four, time_signatures
from orchestrion.errors import BadInput
from orchestrion.testing import real_world
from orchestrion.testing.fuzz_inputs import vlq

NOTE = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00"  # C4 for a quarter at 480 ticks per quarter
END = b"\x00\xff\x2f\x00"


def midi_file(*tracks: bytes) -> bytes:
    body = b"".join(b"MTrk" + struct.pack(">I", len(t)) + t for t in tracks)
    return b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), 480) + body


def notes(score: symusic.Score) -> list[tuple[int, int, int]]:
    return sorted((k, n.time, n.pitch) for k, t in enumerate(score.tracks) for n in t.notes)


# ----------------------------------------------------------------------------------------- damaged files


def test_a_controller_value_of_168_no_longer_drops_the_song(fixtures_dir: Path) -> None:
    damaged = fixtures_dir / "pop_damaged_cc.mid"
    with pytest.raises(RuntimeError):  # what symusic alone does with the whole file
        symusic.Score.from_midi(damaged.read_bytes())
    score, dropped = read_midi(damaged)
    assert notes(score) == notes(load_midi(fixtures_dir / "pop_song.mid"))  # every track, every note
    assert [t.name for t in score.tracks] == ["Melody", "Piano", "Strings", "Bass", "Tenor", "Drums"]
    assert dropped[0] == "control change with a value over 127" and "kept 6 tracks" in dropped[-1]
    with pytest.raises(BadInput, match="corrupt") as info:
        read_midi(damaged, strict=True)
    assert info.value.path == str(damaged)


@pytest.mark.parametrize(
    ("damage", "kept", "reported"),
    [
        (b"\x00\x90\xc8\x40" + NOTE, 1, "note-on with a value over 127"),
        (b"\x00\xf4" + NOTE, 1, "system message 0xF4"),
        (b"\x00\x3c\x40" + NOTE, 1, "data bytes without a status byte"),
        (b"\x00\xe0\x00\x90" + NOTE, 1, "pitch bend with a value over 127"),
        (NOTE + b"\x00\xff\x01\x7f\x41", 1, "a meta event runs past it"),
        (NOTE + b"\x00\xf0\x7f\x41", 1, "a system-exclusive message runs past it"),
    ],
    ids=["pitch-200", "undefined-status", "no-status", "pitch-bend", "meta-overrun", "sysex-overrun"],
)
def test_damaged_events_are_dropped_and_reported(damage: bytes, kept: int, reported: str) -> None:
    data = midi_file(b"\x00\xff\x51\x03\x07\xa1\x20" + END, damage + END)
    score, dropped = read_midi(data)
    assert sum(len(t.notes) for t in score.tracks) == kept
    assert any(reported in line for line in dropped), dropped


def test_a_file_cut_short_is_still_refused(fixtures_dir: Path) -> None:
    with pytest.raises(BadInput, match="truncated"):
        read_midi(fixtures_dir / "truncated.mid")


def test_repair_keeps_a_sound_file_as_it_is(fixtures_dir: Path) -> None:
    data = (fixtures_dir / "multitrack.mid").read_bytes()
    fixed, dropped = repair(data)
    assert dropped == []
    assert notes(symusic.Score.from_midi(fixed)) == notes(symusic.Score.from_midi(data))


# ---------------------------------------------------------------------------------------------- channels


def channels(data: bytes) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Per track: the channels it uses and its program changes as (tick, program)."""
    _, tracks, _ = read_tracks(data)
    return [
        (
            sorted({e.status & 0x0F for e in t if e.is_channel}),
            [(e.tick, e.data[1]) for e in t if e.is_channel and e.status & 0xF0 == 0xC0],
        )
        for t in tracks
    ]


def test_sixteen_tracks_get_a_channel_per_program_and_drums_on_ten(tmp_path: Path) -> None:
    score = real_world.many_tracks(16, repeat_program=True)  # 15 programs, the last two tracks share one
    raw = channels(bytes(score.dumps_midi()))
    assert raw[0][0] == raw[15][0] == [0] and raw[0][1][0][1] != raw[15][1][0][1]  # symusic: two programs on 1
    used = channels(save_midi(score, tmp_path / "x.mid").read_bytes())
    by_channel: dict[int, set[int]] = {}
    for chans, programs in used:
        for c in chans:
            by_channel.setdefault(c, set()).update(p for _, p in programs)
    assert all(len(p) == 1 for p in by_channel.values()) and 9 not in by_channel
    assert used[14][0] == used[15][0]  # the two tracks of one program share its channel

    with_drums = channels(midi_bytes(real_world.many_tracks(16, drums=True))[0])
    assert with_drums[-1][0] == [9] and all(9 not in chans for chans, _ in with_drums[:-1])


def test_more_programs_than_channels_take_turns_or_are_reported() -> None:
    data, report = midi_bytes(real_world.many_tracks(17, overlapping=False))  # one after the other
    assert report == []
    used = channels(data)
    shared = [k for k, (chans, _) in enumerate(used) if chans == used[-1][0]]
    assert shared == [0, 15, 16]  # tracks 16 and 17 take turns with track 1 on its channel
    assert [used[k][1] for k in shared] == [[(0, 40)], [(4 * 15 * 480, 55)], [(4 * 16 * 480, 56)]]  # at first notes
    _, report = midi_bytes(real_world.many_tracks(16))  # 16 programs at once: a MIDI file holds 15 (and drums)
    assert len(report) == 1 and "more than 15 programs sound at once" in report[0]


def test_synthesis_and_rendering_write_proper_channels(tmp_path: Path) -> None:
    """The MIDI file FluidSynth plays for a score, and the one `render` writes for a damaged file: 16 tracks of
    15 programs, which symusic alone writes with two programs on channel 1."""
    from orchestrion.core.render import _midi_file, score_from_file

    def one_program_a_channel(data: bytes) -> bool:
        programs: dict[int, set[int]] = {}
        for chans, changes in channels(data):
            for c in chans:
                programs.setdefault(c, set()).update(p for _, p in changes)
        return all(len(p) == 1 for p in programs.values())

    song = real_world.many_tracks(16, repeat_program=True)
    assert not one_program_a_channel(bytes(song.dumps_midi()))
    with _midi_file(song) as (path, _):
        assert one_program_a_channel(path.read_bytes())
    damaged = tmp_path / "damaged.mid"
    damaged.write_bytes(real_world.with_bad_controller(bytes(song.dumps_midi()), 168))
    (tmp_path / "work").mkdir()
    _, midi = score_from_file(damaged, tmp_path / "work")
    assert midi != damaged and one_program_a_channel(midi.read_bytes())


def test_a_file_with_proper_channels_keeps_its_bytes(fixtures_dir: Path) -> None:
    score = load_midi(fixtures_dir / "pop_song.mid")
    assert midi_bytes(score) == (bytes(score.dumps_midi()), [])


# ------------------------------------------------------------------------------------------------ meters


def meters_score(*changes: tuple[int, int, int]) -> symusic.Score:
    """One note, and time signatures (tick, numerator, denominator) in this file order, in one track."""
    events = b"".join(vlq(0) + b"\xff\x58\x04" + bytes([n, {1: 0, 2: 1, 4: 2, 8: 3}[d], 24, 8]) for _, n, d in changes)
    return symusic.Score.from_midi(midi_file(events + NOTE + END))


def test_signatures_on_one_tick_are_resolved_by_file_order() -> None:
    assert [(s.numerator, s.denominator) for s in time_signatures(meters_score((0, 4, 4), (0, 3, 4)))] == [(3, 4)]
    assert [(s.numerator, s.denominator) for s in time_signatures(meters_score((0, 3, 4), (0, 4, 4)))] == [(4, 4)]


@pytest.mark.parametrize(
    ("meter", "tiles"),
    [((4, 4), True), ((2, 4), True), ((2, 2), True), ((4, 2), True), ((8, 4), True), ((1, 4), True),
     ((3, 4), False), ((6, 8), False), ((3, 2), False), ((12, 8), False), ((0, 4), False)],
)  # fmt: skip
def test_which_meters_regroup_into_four_four(meter: tuple[int, int], tiles: bool) -> None:
    assert tiles_four_four(*meter) is tiles


def test_corpus_export_writes_a_damaged_file_clean_and_lists_it(fixtures_dir: Path, tmp_path: Path) -> None:
    from orchestrion.core.folder_export import export_folder

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "song.mid").write_bytes((fixtures_dir / "pop_damaged_cc.mid").read_bytes())
    report = export_folder(tmp_path / "in", tmp_path / "out")
    assert report["bad"] == [] and report["repaired"][0]["path"] == "song.mid"
    assert "control change with a value over 127" in report["repaired"][0]["dropped"]
    clean = symusic.Score.from_midi((tmp_path / "out" / "song.mid").read_bytes())  # symusic reads it now
    assert notes(clean) == notes(load_midi(fixtures_dir / "pop_song.mid"))
