"""Standard MIDI files at the byte level: damaged files read leniently, and channels given out on writing.

    repair(data) -> (bytes, dropped)       a file symusic refuses, rewritten without its damaged events
    read_tracks(data) -> [[Event, ...]]    every track's events (absolute ticks), as far as they can be read
    allocate_channels(tracks) -> channels  a MIDI channel per track: drums on 10, programs never sharing one
    fit_channels(data, uses) -> (bytes, notes)  a file symusic wrote, each track moved to a proper channel

Files in the wild carry damage that one strict reader refuses whole: a controller value of 168 (a data byte
with its top bit set), an undefined status byte, a meta event whose length runs past its track. symusic
refuses such a file; `repair` keeps the file's framing (chunks, event lengths), drops each event it cannot
read and says what it dropped, so that every readable track and event survives. A file cut short (a track
shorter than its header says, fewer tracks than announced) is not repaired: what is missing cannot be known,
and `orchestrion.core.music.load_midi` refuses it as truncated.

symusic writes track *i* on channel *i* (modulo 16, drums on 10): a 16-track piece puts two programs on
channel 1 and leaves channel 10 unused. `allocate_channels` gives drums channel 10 and every other program a
channel of its own while the 15 others last; past them, tracks share a channel only when they never sound
at the same time, and a program change is sent at each one's first note. Pure Python, no symusic.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

DRUM_CHANNEL = 9  # channel 10, counted from 1
MELODIC_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)
# Data bytes of each channel message kind (by the status byte's top nibble), and their names for reports.
DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
KIND_NAMES = {
    0x80: "note-off",
    0x90: "note-on",
    0xA0: "key pressure",
    0xB0: "control change",
    0xC0: "program change",
    0xD0: "channel pressure",
    0xE0: "pitch bend",
}
# System common and real-time messages have no place in a file, but some files hold them: their data bytes.
SYSTEM_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF4: 0, 0xF5: 0, 0xF6: 0, 0xF8: 0, 0xF9: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0,
                0xFD: 0, 0xFE: 0}  # fmt: skip


@dataclass
class Event:
    """One event of a track: its absolute tick and its bytes, status byte first (no running status)."""

    tick: int
    data: bytes

    @property
    def status(self) -> int:
        return self.data[0]

    @property
    def is_channel(self) -> bool:
        return 0x80 <= self.status < 0xF0


def _vlq(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """A variable-length quantity at `pos` (at most 4 bytes) and the position after it; None when unreadable."""
    value = 0
    for i in range(pos, min(pos + 4, end)):
        value = (value << 7) | (data[i] & 0x7F)
        if not data[i] & 0x80:
            return value, i + 1
    return None


def vlq(n: int) -> bytes:
    """`n` as a MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(kind, start of body, end of body) of every chunk whose body lies whole inside `data`."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if pos + 8 + size > len(data):
            break
        out.append((kind, pos + 8, pos + 8 + size))
        pos += 8 + size
    return out


def _parse_track(data: bytes, pos: int, end: int, dropped: Counter) -> list[Event]:
    """The readable events of one track body; what could not be read is counted in `dropped` by kind."""
    events: list[Event] = []
    tick, running, resync = 0, None, False
    while pos < end:
        if not resync:
            delta = _vlq(data, pos, end)
            if delta is None:
                dropped["unreadable bytes at the end of a track (a broken delta time)"] += 1
                break
            tick, pos = tick + delta[0], delta[1]
        resync = False
        if pos >= end:
            break
        status = data[pos]
        if status == 0xFF:  # meta event: type, length, bytes
            length = _vlq(data, pos + 2, end) if pos + 2 <= end else None
            if length is None or length[1] + length[0] > end:
                dropped["unreadable bytes at the end of a track (a meta event runs past it)"] += 1
                break
            if data[pos + 1] == 0x2F:  # end of track: the writer adds its own
                break
            events.append(Event(tick, data[pos : length[1] + length[0]]))
            pos = length[1] + length[0]
            continue
        if status in (0xF0, 0xF7):  # system exclusive: length, bytes
            length = _vlq(data, pos + 1, end)
            if length is None or length[1] + length[0] > end:
                dropped["unreadable bytes at the end of a track (a system-exclusive message runs past it)"] += 1
                break
            events.append(Event(tick, data[pos : length[1] + length[0]]))
            pos = length[1] + length[0]
            running = None
            continue
        if status in SYSTEM_BYTES:
            dropped[f"system message 0x{status:02X} (not allowed in a file)"] += 1
            pos += 1 + SYSTEM_BYTES[status]
            continue
        if status & 0x80:
            running, pos = status, pos + 1
        elif running is None:  # the event's length is unknown: read on from the next status byte
            dropped["data bytes without a status byte"] += 1
            while pos < end and not data[pos] & 0x80:
                pos += 1
            resync = True
            continue
        size = DATA_BYTES[running & 0xF0]
        body = data[pos : pos + size]
        pos += size
        if len(body) < size:
            dropped["unreadable bytes at the end of a track (a message cut short)"] += 1
            break
        if any(b & 0x80 for b in body):
            dropped[f"{KIND_NAMES[running & 0xF0]} with a value over 127"] += 1
            continue
        events.append(Event(tick, bytes([running]) + body))
    return events


def read_tracks(data: bytes) -> tuple[bytes, list[list[Event]], Counter]:
    """The header chunk's body, every track's readable events and what was dropped (kind -> count).

    Chunks of other kinds than MTrk are skipped (the standard says to), and counted.
    """
    found = chunks(data)
    dropped: Counter = Counter()
    if not found or found[0][0] != b"MThd":
        return b"", [], dropped
    header = data[found[0][1] : found[0][2]]
    tracks = []
    for kind, start, end in found[1:]:
        if kind == b"MTrk":
            tracks.append(_parse_track(data, start, end, dropped))
        else:
            dropped[f"unknown chunk {kind!r}"] += 1
    return header, tracks, dropped


def write_file(header: bytes, tracks: list[list[Event]]) -> bytes:
    """A standard MIDI file of `tracks` (events sorted by tick, end of track added), under `header`."""
    out = bytearray(b"MThd" + struct.pack(">I", len(header)) + header[:2] + struct.pack(">H", len(tracks)))
    out += header[4:]
    for events in tracks:
        body, tick = bytearray(), 0
        for event in sorted(events, key=lambda e: e.tick):  # stable: the file's order within a tick
            body += vlq(event.tick - tick) + event.data
            tick = event.tick
        body += b"\x00\xff\x2f\x00"
        out += b"MTrk" + struct.pack(">I", len(body)) + body
    return bytes(out)


def repair(data: bytes) -> tuple[bytes, list[str]]:
    """`data` rewritten with every readable event of every track, and a line per kind of thing dropped."""
    header, tracks, dropped = read_tracks(data)
    if len(header) < 6:
        return data, []
    notes = sum(1 for track in tracks for e in track if e.status & 0xF0 == 0x90 and e.data[2] > 0)
    report = [f"{count} {what}" if count > 1 else what for what, count in sorted(dropped.items())]
    if report:
        report.append(f"kept {len(tracks)} tracks and {notes} note-ons")
    return write_file(header, tracks), report


# ----------------------------------------------------------------------------------------- channels


@dataclass(frozen=True)
class TrackUse:
    """What channel allocation needs of a track: its program, whether it is drums, when it sounds (ticks)."""

    program: int
    is_drum: bool
    start: int
    end: int
    has_notes: bool = True


def allocate_channels(tracks: list[TrackUse]) -> tuple[list[int], list[str]]:
    """A channel (0-15) per track, and a line for each compromise made.

    Drums go to channel 10. Each program gets a channel of its own (tracks of one program share it) while
    the 15 melodic channels last; then a program takes a channel whose programs are silent over its whole
    span; failing that, the channel of the nearest program in its General MIDI family, reported.
    """
    channels = [DRUM_CHANNEL] * len(tracks)
    # (program, spans) per channel; a program keeps the channel it was given first.
    owner: dict[int, int] = {}
    spans: dict[int, list[tuple[int, int, int]]] = {c: [] for c in MELODIC_CHANNELS}
    notes: list[str] = []
    order = sorted(range(len(tracks)), key=lambda i: (not tracks[i].has_notes, tracks[i].start, i))
    for i in order:
        track = tracks[i]
        if track.is_drum:
            continue
        program = track.program
        if program in owner:
            channel = owner[program]
        else:
            free = [c for c in MELODIC_CHANNELS if not spans[c]]
            idle = [c for c in MELODIC_CHANNELS if all(e <= track.start or s >= track.end for _, s, e in spans[c])]
            if free:
                channel = free[0]
                owner[program] = channel
            elif idle:
                channel = idle[0]
            else:
                family = [c for c in MELODIC_CHANNELS if any(p // 8 == program // 8 for p, _, _ in spans[c])]
                channel = (family or list(MELODIC_CHANNELS))[0]
                heard = spans[channel][0][0]
                notes.append(
                    f"track {i + 1} (program {program}) plays on channel {channel + 1} with program {heard}: more "
                    "than 15 programs sound at once, which a MIDI file cannot hold"
                )
        spans[channel].append((program, track.start, track.end))
        channels[i] = channel
    return channels, notes


def _program_of(events: list[Event]) -> int | None:
    return next((e.data[1] for e in events if e.is_channel and e.status & 0xF0 == 0xC0), None)


def channels_valid(tracks: list[list[Event]], uses: list[TrackUse]) -> bool:
    """True when drums are on channel 10, nothing else is, and no two programs share a channel."""
    programs: dict[int, int] = {}
    for events, use in zip(tracks, uses, strict=True):
        for channel in {e.status & 0x0F for e in events if e.is_channel}:
            if (channel == DRUM_CHANNEL) != use.is_drum:
                return False
            if not use.is_drum and programs.setdefault(channel, use.program) != use.program:
                return False
    return True


def fit_channels(data: bytes, uses: list[TrackUse]) -> tuple[bytes, list[str]]:
    """A file symusic wrote for a score (one MTrk per score track, in order) with proper channels.

    The file is returned as it is when its channels are already proper (so files that were fine keep their
    bytes); else each track moves to its channel from `allocate_channels`, and a track sharing a channel
    with another program gets its program change at its first note, so each sounds with its own program.
    """
    header, tracks, _ = read_tracks(data)
    if len(tracks) != len(uses) or channels_valid(tracks, uses):
        return data, []
    channels, report = allocate_channels(uses)
    shared = Counter(channels)
    for events, channel, use in zip(tracks, channels, uses, strict=True):
        for j, event in enumerate(events):
            if event.is_channel:
                tick = event.tick
                if event.status & 0xF0 == 0xC0 and shared[channel] > 1 and use.has_notes:
                    tick = max(tick, use.start)
                events[j] = Event(tick, bytes([(event.status & 0xF0) | channel]) + event.data[1:])
        # A program change moved to a first note comes before that note within its tick.
        events.sort(key=lambda e: (e.tick, not (e.is_channel and e.status & 0xF0 == 0xC0)))
    return write_file(header, tracks), report
