"""Files like the ones users bring, made by code: pop arrangements, other meters, damaged bytes, ABC as found.

Each function returns a symusic Score, the bytes of a MIDI file or ABC text, deterministically, so that tests
build what they need in a temporary folder and `tests/fixtures/make_fixtures.py` writes the same files into
the fixtures folder (where the fuzzers take them as seeds).

    pop_song()             8 bars at 175 qpm: Melody (flute), Piano chords, Strings above the melody, Bass
                           (electric bass) and Tenor (tenor sax) by name, Drums on channel 10
    many_tracks(n, ...)    n tracks of distinct programs, all sounding at once or one after the other
    meter_piece(num, den)  a two-voice piece in any meter, every bar full, a note on every beat
    with_bad_controller(data, value)   a MIDI file with one controller value over 127 (168, say)
    abc_collection()       a file as found on the web: a version line, comments, a file header field,
                           tunes without L: written with spaces between notes, a tune verovio cannot engrave
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import symusic

TPQ = 480

# (name, program, notes): a pop arrangement in C, 8 bars; notes are (pitch, start, duration) in quarters.
_CHORDS = ((48, 52, 55), (45, 48, 52), (41, 45, 48), (43, 47, 50))  # C Am F G, one a bar, twice


def _track(name: str, program: int, notes: list[tuple[int, float, float]], *, is_drum: bool = False) -> symusic.Track:
    import symusic

    track = symusic.Track(name, program, is_drum)
    for pitch, start, duration in notes:
        track.notes.append(symusic.Note(round(start * TPQ), max(1, round(duration * TPQ)), pitch, 90))
    track.notes.sort()
    return track


def _score(tracks: list[symusic.Track], *, meter: tuple[int, int] = (4, 4), qpm: float = 120.0) -> symusic.Score:
    import symusic

    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, qpm))
    score.time_signatures.append(symusic.TimeSignature(0, *meter))
    for track in tracks:
        score.tracks.append(track)
    return score


def pop_song(bars: int = 8, qpm: float = 175.0) -> symusic.Score:
    """A pop arrangement whose track names mislead a name-based reader: "Bass" is an electric bass and "Tenor"
    a tenor saxophone. The strings lie above the melody half the time, so the top note across all tracks is
    not the melody."""
    tune = [72, 74, 76, 74, 72, 71, 72, 69]
    melody, piano, strings, bass, sax, kit = [], [], [], [], [], []
    for bar in range(bars):
        t = 4 * bar
        chord = _CHORDS[bar % 4]
        for beat in range(4):
            melody.append((tune[(2 * bar + beat) % len(tune)] - (beat % 2) * 2, t + beat, 0.9))
            kit += [(36 if beat % 2 == 0 else 38, t + beat, 0.25), (42, t + beat + 0.5, 0.25)]
        piano += [(p + 12, t + off, 0.9) for off in (0, 1, 2, 3) for p in chord]
        if bar % 2:
            strings += [(p + 36, t, 4) for p in chord]  # a pad an octave above the melody
        bass += [(chord[0] - 12, t, 1.8), (chord[0] - 5, t + 2, 1.8)]
        sax += [(chord[1] + 12, t + 2.5, 0.5), (chord[2] + 12, t + 3, 0.9)]
    tracks = [
        _track("Melody", 73, melody),
        _track("Piano", 0, piano),
        _track("Strings", 48, strings),
        _track("Bass", 33, bass),
        _track("Tenor", 66, sax),
        _track("Drums", 0, kit, is_drum=True),
    ]
    return _score(tracks, qpm=qpm)


def many_tracks(
    n: int, *, overlapping: bool = True, drums: bool = False, repeat_program: bool = False
) -> symusic.Score:
    """`n` one-bar tracks of distinct programs (40, 41, ...): all in bar 1, or one bar each (`overlapping=False`);
    with `drums` the last is a drum track, with `repeat_program` the last two share a program."""
    tracks = []
    for k in range(n):
        start = 0 if overlapping else 4 * k
        program = 40 + k - (1 if repeat_program and k == n - 1 else 0)
        tracks.append(_track(f"track {k + 1}", program, [(60 + k % 12, start, 3.5)], is_drum=drums and k == n - 1))
    return _score(tracks)


def meter_piece(numerator: int, denominator: int, bars: int = 8) -> symusic.Score:
    """A melody with a note on every beat and a bass holding each bar, `bars` full bars of `numerator/denominator`."""
    beat = 4 / denominator
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    melody = [(scale[(b * numerator + k) % 8], (b * numerator + k) * beat, beat * 0.9)
              for b in range(bars) for k in range(numerator)]  # fmt: skip
    bass = [(48 - (b % 3) * 2, b * numerator * beat, numerator * beat) for b in range(bars)]
    return _score([_track("melody", 0, melody), _track("bass", 32, bass)], meter=(numerator, denominator))


def with_bad_controller(data: bytes, value: int = 168, track: int = 1) -> bytes:
    """`data` (a MIDI file) with a control change of `value` (over 127: damage) at the start of track `track`."""
    pos, found = 8 + int.from_bytes(data[4:8], "big"), -1
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        found += data[pos : pos + 4] == b"MTrk"
        if found == track:
            body = b"\x00\xb0\x07" + bytes([value]) + data[pos + 8 : pos + 8 + size]  # volume = value
            return data[:pos] + b"MTrk" + struct.pack(">I", len(body)) + body + data[pos + 8 + size :]
        pos += 8 + size
    raise ValueError(f"the file has no track {track}")


NESTED_CHORDS = "[ [ B, B, ] ] d2 B2 |"  # abc2midi refuses it; verovio crashed on it (a segmentation fault)


def abc_collection() -> str:
    """An ABC file as found: `%abc-2.1`, comments, a file header field (R:), three tunes, the first two without
    L: and spaced note by note (so the standard's default unit decides: 1/16 in 2/4, 1/8 in 6/8), the third
    with nested chords."""
    return (
        "%abc-2.1\n"
        "% Tunes collected for the tests: a comment before the first tune\n"
        "R:polka\n"
        "\n"
        "X:1\n"
        "T:Spaced Polka\n"
        "M:2/4\n"
        "K:G\n"
        "% no L: in 2/4, so each note is a 16th\n"
        "G A B c d e f g | a g f e d c B A | G B d g f d B G | A c e a g e c A |\n"
        "\n"
        "X:2\n"
        "T:Spaced Jig\n"
        "M:6/8\n"
        "K:D\n"
        "D F A d A F | G B d g d B | A c e a e c | d3 D3 |\n"
        "\n"
        "X:3\n"
        "T:Nested Chords\n"
        "M:4/4\n"
        "L:1/8\n"
        "K:G\n"
        f"GABc d2B2 | {NESTED_CHORDS} c2A2 G4 |\n"
    )
