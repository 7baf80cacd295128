"""Fuzz inputs: seeded mutators for MIDI, WAV, ABC and mmm text, and generators of inputs from scratch.

Mutations of real files (bit flips, byte and word overwrites with boundary values, truncation, deletion,
duplication, splices) plus format-aware ones: MIDI chunk lengths, header fields, variable-length quantities,
status bytes (running status) and extra meter/tempo tracks; RIFF sizes and fmt fields of WAV files, and NaN
samples. Everything draws from one `random.Random`, so an input is reproduced by its seed and index.
`orchestrion.testing.fuzzing` feeds these to the readers.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Iterator

from orchestrion.core.midifile import vlq

INTERESTING_32 = (0, 1, 2, 6, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
INTERESTING_16 = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xE250, 0xFFFF)
INTERESTING_8 = (0, 1, 0x7F, 0x80, 0x90, 0xB0, 0xC0, 0xF0, 0xF7, 0xFF)

# ------------------------------------------------------------------------------------- byte mutators


def _bit_flip(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        if data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)


def _byte_set(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.choice(INTERESTING_8) if rng.random() < 0.6 else rng.randrange(256)


def _word_set(rng: random.Random, data: bytearray) -> None:
    if len(data) >= 4:
        i = rng.randrange(len(data) - 3)
        width, values = (4, INTERESTING_32) if rng.random() < 0.5 else (2, INTERESTING_16)
        order = ">" if rng.random() < 0.5 else "<"
        data[i : i + width] = struct.pack(order + ("I" if width == 4 else "H"), rng.choice(values))


def _truncate(rng: random.Random, data: bytearray) -> None:
    if data:
        del data[rng.randrange(len(data)) :]


def _delete(rng: random.Random, data: bytearray) -> None:
    if data:
        i = rng.randrange(len(data))
        del data[i : i + rng.randint(1, 32)]


def _duplicate(rng: random.Random, data: bytearray) -> None:
    if data:
        i = rng.randrange(len(data))
        chunk = data[i : i + rng.randint(1, 64)]
        j = rng.randrange(len(data) + 1)
        data[j:j] = chunk * rng.choice((1, 1, 2, 16))


def _insert_random(rng: random.Random, data: bytearray) -> None:
    j = rng.randrange(len(data) + 1)
    data[j:j] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))


BYTE_MUTATORS = (_bit_flip, _byte_set, _word_set, _truncate, _delete, _duplicate, _insert_random)


def _splice(rng: random.Random, a: bytes, b: bytes) -> bytearray:
    i = rng.randrange(len(a) + 1)
    j = rng.randrange(len(b) + 1)
    return bytearray(a[:i] + b[j:])


# -------------------------------------------------------------------------------------------- MIDI


def _chunks(data: bytes | bytearray) -> list[tuple[int, bytes, int]]:
    """(offset, id, declared length) of the chunks of a standard MIDI file, as far as they parse."""
    out, i = [], 0
    while i + 8 <= len(data):
        kind, size = bytes(data[i : i + 4]), struct.unpack(">I", data[i + 4 : i + 8])[0]
        out.append((i, kind, size))
        i += 8 + size
    return out


def track_ends(data: bytes) -> list[int]:
    """Byte offsets at which each track chunk of a MIDI file ends: cutting there leaves a file that parses."""
    return [offset + 8 + size for offset, kind, size in _chunks(data)[1:]]


# A PNG signature and an IHDR chunk: a picture renamed to .mid, as happens when a download goes wrong.
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


def _midi_chunk_length(rng: random.Random, data: bytearray) -> None:
    chunks = _chunks(data)
    if not chunks:
        return
    offset, _, size = rng.choice(chunks)
    value = rng.choice((*INTERESTING_32, max(size - 1, 0), size + 1, size + rng.randint(2, 64), max(size - 8, 0)))
    data[offset + 4 : offset + 8] = struct.pack(">I", value & 0xFFFFFFFF)


def _midi_header_field(rng: random.Random, data: bytearray) -> None:
    """Format, track count or division (ticks per quarter, or SMPTE when the top bit is set)."""
    if len(data) >= 14 and data[:4] == b"MThd":
        where = rng.choice((8, 10, 12))
        data[where : where + 2] = struct.pack(">H", rng.choice(INTERESTING_16))


def _midi_vlq(rng: random.Random, data: bytearray) -> None:
    """A delta time or meta/sysex length replaced by a long or unterminated variable-length quantity."""
    tracks = [(o, s) for o, k, s in _chunks(data) if k == b"MTrk" and s > 0]
    if not tracks:
        return
    offset, size = rng.choice(tracks)
    lo, hi = offset + 8, min(offset + 8 + size, len(data))
    if hi <= lo:
        return
    i = rng.randrange(lo, hi)
    encoded = rng.choice(
        (b"\x8f\xff\xff\x7f", b"\xff\xff\xff\xff", b"\xff\xff\xff\xff\x7f", b"\x81\x80\x80\x00", b"\x80")
    )
    data[i : i + rng.choice((0, 1))] = encoded


def _midi_status(rng: random.Random, data: bytearray) -> None:
    """A status byte changed: running status broken or invented, meta and sysex events where notes were."""
    tracks = [(o, s) for o, k, s in _chunks(data) if k == b"MTrk" and s > 0]
    if not tracks:
        return
    offset, size = rng.choice(tracks)
    positions = [i for i in range(offset + 8, min(offset + 8 + size, len(data))) if data[i] & 0x80]
    if positions:
        i = rng.choice(positions)
        data[i] = rng.choice((0x00, 0x40, 0x7F, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0, 0xF7, 0xFF))


def _midi_add_meta_track(rng: random.Random, data: bytearray) -> None:
    """A new track holding one meter, tempo or key change at any time (a meter change mid-bar, at the end...)."""
    if len(data) < 14 or data[:4] != b"MThd":
        return
    meta = rng.choice(
        (
            b"\xff\x58\x04" + bytes((rng.choice((1, 2, 3, 4, 5, 7, 0, 255)), rng.choice((0, 1, 2, 3, 5, 31)), 24, 8)),
            b"\xff\x51\x03" + rng.randrange(1 << 24).to_bytes(3, "big"),
            b"\xff\x59\x02" + bytes((rng.randrange(256), rng.randrange(256))),
        )
    )
    delta = rng.choice((0, 1, 7, 240, 480, 1920, 10_000, rng.randrange(1 << 20)))
    body = vlq(delta) + meta + b"\x00\xff\x2f\x00"
    data += b"MTrk" + struct.pack(">I", len(body)) + body
    count = struct.unpack(">H", data[10:12])[0]
    data[10:12] = struct.pack(">H", min(count + 1, 0xFFFF))
    if data[8:10] == b"\x00\x00":
        data[8:10] = b"\x00\x01"  # format 1, so the extra track is read


MIDI_MUTATORS = (
    *BYTE_MUTATORS,
    _midi_chunk_length,
    _midi_header_field,
    _midi_vlq,
    _midi_status,
    _midi_status,
    _midi_add_meta_track,
    _midi_add_meta_track,
)


def generate_midi(rng: random.Random) -> bytes:
    """A standard MIDI file built from random but mostly well-formed events (notes, tempos, meters, junk)."""
    fmt = rng.choice((0, 1, 1, 2))
    n_tracks = 1 if fmt == 0 else rng.randint(1, 4)
    if fmt == 1 and rng.random() < 0.01:  # now and then very many tracks, for the encoder's dense grid
        n_tracks = rng.randint(100, 3000)
    division = rng.choice((1, 4, 24, 96, 480, 960, 0x7FFF, 0xE250, rng.randrange(1, 0x8000)))
    tracks = []
    for _ in range(n_tracks):
        body = bytearray()
        status = None
        sounding: list[int] = []
        if rng.random() < 0.2:  # the notes start late: after a meter change, past the first windows
            body += vlq(rng.choice((4, 16, 17, 40)) * (division if division < 0x8000 else 480)) + b"\xff\x01\x00"
        for _ in range(rng.randint(0, 60) if n_tracks <= 4 else rng.randint(0, 3)):
            delta = rng.choice(
                (0, 0, 1, 10, 120, 480, rng.randrange(0x0FFFFFFF)) if rng.random() < 0.98 else (0x0FFFFFFF,)
            )
            body += vlq(delta)
            kind = rng.random()
            if kind < 0.6:
                channel = rng.randrange(16) if rng.random() < 0.2 else 0
                if sounding and rng.random() < 0.5:  # close a sounding note: note-off, or note-on at velocity 0
                    pitch = sounding.pop(rng.randrange(len(sounding)))
                    new, velocity = rng.choice(((0x80, 64), (0x90, 0)))
                else:
                    pitch, new, velocity = rng.randrange(128), 0x90, rng.randrange(1, 128)
                    sounding.append(pitch)
                new |= channel
                if new != status or rng.random() < 0.5:  # running status half the time
                    body.append(new)
                    status = new
                body += bytes((pitch, velocity))
            elif kind < 0.7:
                body += b"\xff\x51\x03" + rng.randrange(1 << 24).to_bytes(3, "big")  # tempo, 0 included
                status = None
            elif kind < 0.8:
                meter = rng.choice(((4, 2), (4, 2), (4, 2), (3, 2), (6, 3), (rng.randrange(256), rng.randrange(256))))
                body += b"\xff\x58\x04" + bytes((*meter, 24, 8))  # mostly 4/4, set anywhere, even mid-bar
                status = None
            elif kind < 0.85:
                body += b"\xff\x59\x02" + bytes((rng.randrange(256), rng.randrange(256)))  # key signature
                status = None
            elif kind < 0.9:
                text = bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))
                body += bytes((0xFF, rng.choice((1, 3, 4, 5)))) + vlq(len(text)) + text
                status = None
            elif kind < 0.95:
                body += bytes((0xC0 | rng.randrange(16), rng.randrange(128)))
                status = None
            else:
                body += bytes((0xF0,)) + vlq(3) + b"\x7e\x7f\xf7"
                status = None
        if rng.random() < 0.9:
            body += b"\x00\xff\x2f\x00"
        tracks.append(b"MTrk" + struct.pack(">I", len(body)) + bytes(body))
    if fmt == 1 and rng.random() < 0.3:
        tracks.insert(0, _conductor_track(rng, division))
        n_tracks += 1
    header = b"MThd" + struct.pack(">IHHH", 6, fmt, n_tracks, division)
    return header + b"".join(tracks)


def _conductor_track(rng: random.Random, division: int) -> bytes:
    """Meter changes on or off bar lines, the layout real files have (an intro in one meter, then another)."""
    quarter = division if division < 0x8000 else 480
    body = bytearray()
    for _ in range(rng.randint(1, 4)):
        delta = quarter * rng.choice((0, 1, 3, 4, 8, 16, 17, 64)) + rng.choice((0, 0, 0, 1, quarter // 2))
        meter = rng.choice(((4, 2), (4, 2), (3, 2), (2, 2), (6, 3), (5, 2)))
        body += vlq(delta) + b"\xff\x58\x04" + bytes((*meter, 24, 8))
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def midi_inputs(seeds: list[bytes], rng: random.Random, n: int) -> Iterator[bytes]:
    """`n` MIDI inputs: a quarter generated from scratch, the rest seeds mutated 1-3 times or spliced."""
    for _ in range(n):
        r = rng.random()
        if r < 0.25 or not seeds:
            data = bytearray(generate_midi(rng))
            if rng.random() < 0.5:
                rng.choice(MIDI_MUTATORS)(rng, data)
        elif r < 0.35:
            data = _splice(rng, rng.choice(seeds), rng.choice(seeds))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                rng.choice(MIDI_MUTATORS)(rng, data)
        yield bytes(data)


# --------------------------------------------------------------------------------------------- WAV


def _riff_chunks(data: bytes | bytearray) -> list[tuple[int, bytes, int]]:
    out, i = [], 12
    while i + 8 <= len(data):
        kind, size = bytes(data[i : i + 4]), struct.unpack("<I", data[i + 4 : i + 8])[0]
        out.append((i, kind, size))
        i += 8 + size + (size & 1)
    return out


def _wav_riff_size(rng: random.Random, data: bytearray) -> None:
    if len(data) >= 8:
        data[4:8] = struct.pack("<I", rng.choice((*INTERESTING_32, len(data) - 8, len(data) + 1000)))


def _wav_chunk_length(rng: random.Random, data: bytearray) -> None:
    chunks = _riff_chunks(data)
    if chunks:
        offset, _, size = rng.choice(chunks)
        value = rng.choice((*INTERESTING_32, max(size - 1, 0), size + 1, size * 1000))
        data[offset + 4 : offset + 8] = struct.pack("<I", value & 0xFFFFFFFF)


def _wav_fmt_field(rng: random.Random, data: bytearray) -> None:
    """fmt fields: format tag, channels (0, 65535), sample rate (0, 1, 4 GHz), byte rate, block align, bits."""
    fmt = next((o for o, k, _ in _riff_chunks(data) if k == b"fmt "), None)
    if fmt is None:
        return
    base = fmt + 8
    name = rng.choice(("tag", "channels", "rate", "rate", "byterate", "align", "bits"))
    where, width, values = {
        "tag": (0, 2, (0, 1, 2, 3, 6, 7, 0x11, 0xFFFE, 0xFFFF)),
        "channels": (2, 2, (0, 1, 2, 3, 8, 255, 1024, 0xFFFF)),
        "rate": (4, 4, (0, 1, 2, 100, 8000, 44100, 192000, 0x7FFFFFFF, 0xFFFFFFFF)),
        "byterate": (8, 4, INTERESTING_32),
        "align": (12, 2, INTERESTING_16),
        "bits": (14, 2, (0, 1, 7, 8, 12, 16, 24, 32, 64, 0xFFFF)),
    }[name]
    if base + where + width <= len(data):
        data[base + where : base + where + width] = struct.pack("<H" if width == 2 else "<I", rng.choice(values))


def _wav_nan(rng: random.Random, data: bytearray) -> None:
    """NaN or infinity written into the sample data (a float WAV then holds non-finite samples)."""
    chunk = next(((o, s) for o, k, s in _riff_chunks(data) if k == b"data"), None)
    if chunk and chunk[1] >= 4:
        lo = chunk[0] + 8
        hi = min(lo + chunk[1], len(data)) - 4
        if hi > lo:
            i = lo + 4 * ((rng.randrange(lo, hi) - lo) // 4)
            value = rng.choice((float("nan"), float("inf"), -float("inf"), 1e30))
            data[i : i + 4] = struct.pack("<f", value)


WAV_MUTATORS = (*BYTE_MUTATORS, _wav_riff_size, _wav_chunk_length, _wav_fmt_field, _wav_fmt_field, _wav_nan)


def wav_seeds(rng: random.Random) -> list[bytes]:
    """Small real WAV files in every common layout (PCM 8/16/24/32, float, double, mu-law, stereo, 6 channels)."""
    import numpy as np
    import soundfile as sf

    out = []
    layouts = [
        (1, 16000, "PCM_16"), (2, 44100, "PCM_16"), (1, 8000, "PCM_U8"), (1, 22050, "PCM_24"),
        (2, 16000, "PCM_32"), (1, 16000, "FLOAT"), (2, 48000, "DOUBLE"), (1, 8000, "ULAW"), (6, 16000, "FLOAT"),
    ]  # fmt: skip
    for channels, rate, subtype in layouts:
        frames = rate // 50  # 20 ms: enough structure, cheap to read
        t = np.arange(frames) / rate
        x = 0.5 * np.sin(2 * np.pi * 440 * t)[:, None] * np.ones((1, channels))
        buf = io.BytesIO()
        sf.write(buf, x, rate, subtype=subtype, format="WAV")
        out.append(buf.getvalue())
    return out


def generate_wav(rng: random.Random) -> bytes:
    """A RIFF/WAVE header with random fields around random sample bytes."""
    tag = rng.choice((1, 3, 0xFFFE, rng.randrange(0x10000)))
    channels = rng.choice((0, 1, 2, rng.randrange(0x10000)))
    rate = rng.choice((0, 1, 8000, 16000, 44100, rng.randrange(1 << 32)))
    bits = rng.choice((0, 8, 16, 24, 32, 64, rng.randrange(0x10000)))
    align = (channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    samples = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
    declared = rng.choice((len(samples), 0, 0xFFFFFFFF, 0x7FFFFFFF, len(samples) * 1000))
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wav_inputs(seeds: list[bytes], rng: random.Random, n: int) -> Iterator[bytes]:
    for _ in range(n):
        r = rng.random()
        if r < 0.15 or not seeds:
            data = bytearray(generate_wav(rng))
        elif r < 0.22:
            data = _splice(rng, rng.choice(seeds), rng.choice(seeds))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                rng.choice(WAV_MUTATORS)(rng, data)
        yield bytes(data)


# -------------------------------------------------------------------------------------------- text


def _text_mutations(rng: random.Random, text: str, alphabet: str) -> str:
    chars = list(text)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        op = rng.randrange(6)
        i = rng.randrange(len(chars) + 1)
        if op == 0 and chars:  # replace
            chars[min(i, len(chars) - 1)] = rng.choice(alphabet)
        elif op == 1:  # insert
            chars[i:i] = [rng.choice(alphabet) for _ in range(rng.randint(1, 8))]
        elif op == 2:  # delete
            del chars[i : i + rng.randint(1, 16)]
        elif op == 3 and chars:  # repeat a span many times (backtracking regexes, long runs)
            span = chars[i : i + rng.randint(1, 8)]
            chars[i:i] = span * rng.choice((2, 10, 200, 2000))
        elif op == 4:  # truncate
            del chars[i:]
        else:  # odd characters: NUL, controls, the newline mark, surrogates escaped, wide characters
            chars[i:i] = rng.choice(
                ["\x00", "\r", "\r\n", "\t", "\x7f", "\u00b6", "\ufffd", "\u2028", "𝄞", "\x0b", "\ud800"]
            )
    return "".join(chars)


ABC_ALPHABET = (
    "ABCDEFGabcdefgz0123456789|:[]()<>-^_=,'/~.!\"%{}+HLMOPSTuv \n XTMLKRNQ:wW\\&#;" + "é\u00b6\t"
)  # fmt: skip


def generate_abc(rng: random.Random) -> str:
    lines = [f"X:{rng.randrange(100)}", "T:" + "".join(rng.choice(ABC_ALPHABET) for _ in range(rng.randint(0, 12)))]
    for name in rng.sample("MLKRQNBO", rng.randint(0, 6)):
        value = rng.choice(("4/4", "6/8", "", "C|", "1/8", "D", "maj", "Gdor", "hornpipe", "<b>x</b>", "&amp;"))
        lines.append(f"{name}:{rng.choice(('', ' '))}{value}")
    for _ in range(rng.randint(0, 8)):
        lines.append("".join(rng.choice(ABC_ALPHABET) for _ in range(rng.randint(0, 60))))
    return "\n".join(lines) + rng.choice(("\n", "", "\n\n"))


def abc_inputs(seeds: list[str], rng: random.Random, n: int) -> Iterator[str]:
    for _ in range(n):
        r = rng.random()
        if r < 0.25 or not seeds:
            yield generate_abc(rng)
        elif r < 0.35:
            a, b = rng.choice(seeds), rng.choice(seeds)
            yield a[: rng.randrange(len(a) + 1)] + b[rng.randrange(len(b) + 1) :]
        else:
            yield _text_mutations(rng, rng.choice(seeds), ABC_ALPHABET)


def mmm_junk(rng: random.Random) -> str:
    return rng.choice(
        (
            "NOTE_ON=", "NOTE_ON=-1", "NOTE_ON=128", "NOTE_ON=99999999999999999999", "NOTE_OFF=1.5", "TIME_DELTA=0",
            "TIME_DELTA=17", "TIME_DELTA=١٢", "NOTE_ON=²", "INST=", "INST=128", "INST=-0", "DENSITY=x", "=", "==",
            "BAR_START=1", "<unk>", "<pad>", "PIECE_END", "FILL_IN", "FILL_START", "FILL_END", "\x00", "NOTE_ON=٣",
        )
    )  # fmt: skip


def generate_mmm(rng: random.Random, vocab: list[str]) -> list[str]:
    return [rng.choice(vocab) if rng.random() < 0.9 else mmm_junk(rng) for _ in range(rng.randint(0, 300))]


def mmm_inputs(seeds: list[list[str]], vocab: list[str], rng: random.Random, n: int) -> Iterator[str]:
    """Token lines as the CLI reads them: real encodings with tokens dropped, repeated, swapped or invented."""
    for _ in range(n):
        r = rng.random()
        if r < 0.25 or not seeds:
            tokens = generate_mmm(rng, vocab)
        else:
            tokens = list(rng.choice(seeds))
            for _ in range(rng.choice((1, 1, 2, 4, 16))):
                op = rng.randrange(5)
                i = rng.randrange(len(tokens) + 1)
                if op == 0:
                    del tokens[i : i + rng.randint(1, 8)]
                elif op == 1:
                    tokens[i:i] = [rng.choice(vocab) for _ in range(rng.randint(1, 4))]
                elif op == 2:
                    tokens[i:i] = [mmm_junk(rng)]
                elif op == 3:
                    tokens[i:i] = tokens[i : i + rng.randint(1, 20)] * rng.choice((2, 50))
                elif tokens:
                    j = rng.randrange(len(tokens))
                    k = min(i, len(tokens) - 1)
                    tokens[j], tokens[k] = tokens[k], tokens[j]
        sep = rng.choice((" ", " ", " ", "  ", "\t", " \u00a0", "\u3000"))
        yield sep.join(tokens)
