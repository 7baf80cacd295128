"""The mmm codec: multi-track MIDI <-> mmmtrack tokens (the format in `orchestrion.mmm.vocabulary`).

    encode(score) -> tokens               a whole 4/4 piece as one sequence
    encode_windows(score, options)        its windows of `bars` bars (every `hop`), in every transposition
    encode_batch(scores, options)         many scores as token ids in one vectorised pass (what the dataset
                                          pipeline calls), per score an `Encoded` or the `BadInput` it raised
    decode(tokens) -> (score, repairs)    never raises on model output (`orchestrion.mmm.decode`)
    read_prompt(score) -> PromptReading   a prompt's notes, 4/4 bars and tempo, and what reading it changed

What the round trip keeps: `decode(encode(score))` gives back `canonical_notes(score)` exactly: pitch,
start, end, track and program of every note on the grid, where canonical means quantized (starts and ends
rounded to the nearest step, at least one step long), one note per (track, pitch, start) (the longest),
and a note cut where the next note of the same pitch in the same track begins (MIDI cannot hold one key
twice), and a short note rounded onto the piece's last grid point moved a step back (it would otherwise
begin a bar of its own). `Notes.quantised()` says what this changed. Tracks without notes are dropped;
velocities and tempo are not encoded. A track's INST= is its General MIDI program
(`orchestrion.mmm.vocabulary.instrument_of`); sung parts named soprano, alto, tenor or bass come back with
their name and `voice_program`, drums as drums.

Meters: 4/4 and every meter whose bars regroup into 4/4 bars (2/4, 2/2, 4/2, 8/4) are encoded as 4/4 bars;
other meters are left out and reported per segment (`orchestrion.mmm.meters`).

Encoding is vectorised over symusic's numpy arrays: all notes of all tracks, in all windows at once (the
work per batch is bounded by MAX_GRID_CELLS and MAX_NOTE_WINDOWS). Track permutation and fill draw from a
seed per score (`options.seed` and the score's key), so encoding is deterministic whatever the batching.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.errors import BadInput
from orchestrion.mmm.decode import decode_tokens
from orchestrion.mmm.meters import meter_segments, window_starts
from orchestrion.mmm.vocabulary import (
    BAR_END,
    BAR_START,
    DENSITY_PLACEHOLDER,
    FILL_END,
    FILL_IN,
    FILL_START,
    MAX_GRID_CELLS,
    MAX_NOTE_WINDOWS,
    PIECE_END,
    PIECE_START,
    STEPS_PER_BAR,
    STEPS_PER_QUARTER,
    TRACK_END,
    TRACK_START,
    VOICES,
    BlockIds,
    MMMOptions,
    instrument_of,
    vocabulary,
)

if TYPE_CHECKING:
    import symusic


# ------------------------------------------------------------------------------------------ notes


@dataclass
class Notes:
    """All notes of a piece on the step grid, as flat arrays (one row per note), plus per-track facts."""

    track: np.ndarray  # int64 track index into the lists below
    start: np.ndarray  # int64 steps
    end: np.ndarray  # int64 steps, > start
    pitch: np.ndarray  # int64
    inst: list[str] = field(default_factory=list)  # "0".."127", "DRUMS" or a voice name
    is_drum: list[bool] = field(default_factory=list)
    meters: list[tuple[int, int, int, int]] = field(default_factory=list)  # (num, den, start, end) in steps
    off_grid: int = 0  # notes whose start was moved onto the grid
    resized: int = 0  # notes whose start was on the grid but whose end was not (a length rounded to 16ths)
    merged: int = 0  # notes dropped as a second note of one key at one step (repeats faster than a 16th)
    moved_back: int = 0  # notes starting on the piece's last grid point, moved a step back (see canonical_batch)

    def quantised(self) -> list[str]:
        """What putting the piece on the 16th-note grid changed, a line each (none when nothing did)."""

        def notes(n: int) -> str:
            return f"{n} note" if n == 1 else f"{n} notes"

        lines = []
        if self.off_grid:
            lines.append(f"{notes(self.off_grid)} moved onto the 16th-note grid")
        if self.resized:
            lines.append(f"{notes(self.resized)} with a length rounded to whole 16ths")
        if self.merged:
            lines.append(
                f"{notes(self.merged)} merged with a note of the same pitch on the same 16th "
                "(repeated notes faster than 16ths)"
            )
        if self.moved_back:
            lines.append(f"{notes(self.moved_back)} just before the end moved a 16th earlier (so that no bar is added)")
        return lines


def canonical_batch(scores: list[symusic.Score], *, voices: bool = False) -> list[Notes]:
    """`canonical_notes` of many scores at once (one sort for all of them)."""
    times, durations, pitches, sizes, tpqs, inst, drums, first_track, owner = [], [], [], [], [], [], [], [], []
    for i, score in enumerate(scores):
        tpq = int(score.tpq)
        first_track.append(len(inst))
        for track in score.tracks:
            n = len(track.notes)
            if n == 0:
                continue
            a = track.notes.numpy()
            times.append(a["time"])
            durations.append(a["duration"])
            pitches.append(a["pitch"])
            sizes.append(n)
            tpqs.append(tpq)
            owner.append(i)
            inst.append(instrument_of(track.program, track.is_drum, track.name, voices=voices))
            drums.append(bool(track.is_drum))
    first_track.append(len(inst))
    n_scores = len(scores)
    if sizes:
        tr = np.repeat(np.arange(len(sizes)), sizes)
        tpq_of = np.repeat(np.asarray(tpqs, np.int64), sizes)
        time = np.concatenate(times).astype(np.int64)
        stop = time + np.concatenate(durations)
        off = (time * STEPS_PER_QUARTER) % tpq_of != 0
        ragged = ~off & ((stop * STEPS_PER_QUARTER) % tpq_of != 0)
        start = (2 * time * STEPS_PER_QUARTER + tpq_of) // (2 * tpq_of)
        end = (2 * stop * STEPS_PER_QUARTER + tpq_of) // (2 * tpq_of)
        # A short note rounded onto the piece's last grid point would begin a bar of its own: one step back.
        piece_of = np.asarray(owner, np.int64)[tr]
        piece_end = np.zeros(n_scores, np.int64)
        np.maximum.at(piece_end, piece_of, end)
        at_end = (start >= piece_end[piece_of]) & (piece_end[piece_of] > 0)
        start = np.where(at_end, piece_end[piece_of] - 1, start)
        end = np.maximum(end, start + 1)
        pitch = np.concatenate(pitches).astype(np.int64)
    else:
        tr = start = end = pitch = piece_of = np.zeros(0, np.int64)
        off = ragged = at_end = np.zeros(0, bool)
    off_grid = np.bincount(piece_of[off], minlength=n_scores)
    resized = np.bincount(piece_of[ragged], minlength=n_scores)
    moved_back = np.bincount(piece_of[at_end], minlength=n_scores)
    # One note per (track, pitch, start), the longest; then cut each where the next of its key begins.
    order = np.lexsort((-end, start, pitch, tr))
    tr, start, end, pitch, piece_of = tr[order], start[order], end[order], pitch[order], piece_of[order]
    same_key = np.zeros(len(tr), bool)
    same_key[1:] = (tr[1:] == tr[:-1]) & (pitch[1:] == pitch[:-1])
    keep = np.ones(len(tr), bool)
    keep[1:] = ~(same_key[1:] & (start[1:] == start[:-1]))
    merged = np.bincount(piece_of[~keep], minlength=n_scores)
    tr, start, end, pitch, same_key = tr[keep], start[keep], end[keep], pitch[keep], same_key[keep]
    if len(tr) > 1:
        end[:-1] = np.where(same_key[1:], np.minimum(end[:-1], start[1:]), end[:-1])
    order = np.lexsort((pitch, start, tr))
    tr, start, end, pitch = tr[order], start[order], end[order], pitch[order]
    bounds = np.searchsorted(tr, first_track)
    out = []
    for i, score in enumerate(scores):
        a, b = bounds[i], bounds[i + 1]
        t0, t1 = first_track[i], first_track[i + 1]
        total = int(end[a:b].max()) if b > a else 0
        notes = Notes(tr[a:b] - t0, start[a:b], end[a:b], pitch[a:b], inst[t0:t1], drums[t0:t1])
        notes.meters = meter_segments(score, total)
        notes.off_grid, notes.resized = int(off_grid[i]), int(resized[i])
        notes.merged, notes.moved_back = int(merged[i]), int(moved_back[i])
        out.append(notes)
    return out


def canonical_notes(score: symusic.Score) -> Notes:
    """Quantize every non-empty track onto the grid and normalise it (see the module docstring)."""
    return canonical_batch([score])[0]


@dataclass
class PromptReading:
    """A prompt (a score to continue, fill or harmonise) as the codec reads it: see `read_prompt`."""

    notes: Notes
    bars: int  # 4/4 bars (a note rounded onto the last grid point adds none)
    tempo: float | None  # quarter notes per minute: the prompt's first tempo (None when it gives none)
    report: list[str]  # a line for each thing reading changed; [] when the prompt is taken as it is


def read_prompt(score: symusic.Score) -> PromptReading:
    """The prompt's notes on the grid, its length in 4/4 bars, its tempo, and what reading it changed: notes
    moved onto the 16th grid, merged (repeats faster than 16ths) or moved back from the very end; meters
    regrouped into 4/4 bars; tempo changes not kept; tracks named like a voice that keep their program.

    Raises BadInput for a prompt without notes, or in a meter whose bars do not regroup into 4/4 bars.
    """
    notes = canonical_notes(score)
    if not len(notes.pitch):
        raise BadInput("the prompt has no notes")
    _, bars, _, regrouped = window_starts(notes, MMMOptions(bars=None))
    report = notes.quantised() + regrouped
    qpm = sorted({round(float(t.qpm), 2) for t in score.tempos}) if len(score.tempos) else []
    tempo = float(score.tempos[0].qpm) if len(score.tempos) else None
    if len(qpm) > 1:
        report.append(f"the prompt changes tempo ({qpm[0]:g}-{qpm[-1]:g} qpm): its first tempo, {tempo:g}, is kept")
    sounding = [t for t in score.tracks if len(t.notes)]
    for k, (track, inst) in enumerate(zip(sounding, notes.inst, strict=True)):
        named = instrument_of(track.program, track.is_drum, track.name, voices=True)
        if named in VOICES and inst not in VOICES:
            report.append(
                f'track {k + 1} ("{track.name.strip()}") is INST={inst}, its General MIDI program, not {named}: '
                "only sung parts (choir programs) are read as voices"
            )
    return PromptReading(notes, bars, tempo, report)


# ------------------------------------------------------------------------------------------ encode


@dataclass
class Encoded:
    """A piece's sequences as token ids, back to back; the form the pipeline stores."""

    ids: np.ndarray  # uint16
    offsets: np.ndarray  # int64, sequences + 1
    density_counts: np.ndarray  # int64 notes per DENSITY slot, in order of appearance
    bars: int  # bars per window (for density per bar)
    skipped: list[str] = field(default_factory=list)  # meter segments left out, and why
    capped: bool = False
    regrouped: list[str] = field(default_factory=list)  # meters read as 4/4 bars (2/4, 2/2, 4/2, ...)

    @property
    def sequences(self) -> int:
        return len(self.offsets) - 1


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges [s, s + n) — the gather index of many slices."""
    ends = np.cumsum(lengths)
    base = np.repeat(starts - (ends - lengths), lengths)
    return base + np.arange(int(ends[-1]) if len(ends) else 0)


def _file_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


@dataclass
class _Timeline:
    """All windows and notes of a batch on one time line (steps), pieces far enough apart."""

    live: list[int]  # indices of the scores that have windows
    bars: list[int]  # bars per window, per live score
    skipped: list[list[str]]  # per live score
    n_tracks: int  # most tracks in one live score
    t0: np.ndarray  # (W,) window starts, ascending
    win_file: np.ndarray  # (W,) position in `live`
    win_bars: np.ndarray  # (W,)
    start: np.ndarray  # (N,) notes of all live scores
    end: np.ndarray
    pitch: np.ndarray
    track: np.ndarray  # (N,) track index within its score
    drum: np.ndarray  # (N,) bool


def _timeline(notes_all: list[Notes], options: MMMOptions, results: list, regroups: list) -> _Timeline | None:
    """Place every score's windows and notes on one time line; scores without windows get their result.
    `regroups[f]` gets what was regrouped into 4/4 bars in score f."""
    live, t0s, nbars, skips, offsets, offset = [], [], [], [], [], 0
    for f, notes in enumerate(notes_all):
        try:
            if len(notes.pitch) == 0:
                raise BadInput("the piece has no notes")
            t0, bars, skipped, regroups[f] = window_starts(notes, options)
        except BadInput as exc:
            results[f] = exc
            continue
        if len(t0) == 0:
            empty = np.zeros(0, np.int64)
            results[f] = Encoded(
                np.zeros(0, np.uint16), np.zeros(1, np.int64), empty, bars, skipped, False, regroups[f]
            )
            continue
        live.append(f)
        offsets.append(offset)
        t0s.append(t0 + offset)
        nbars.append(bars)
        skips.append(skipped)
        total = max(int(notes.end.max()), int(t0[-1]) + bars * STEPS_PER_BAR)
        offset += total + (bars + 1) * STEPS_PER_BAR  # no window of this piece reaches the next one
    if not live:
        return None
    win_file = np.repeat(np.arange(len(live)), [len(t) for t in t0s])
    note_file = np.repeat(np.arange(len(live)), [len(notes_all[f].pitch) for f in live])
    shift = np.asarray(offsets, np.int64)[note_file]
    return _Timeline(
        live=live,
        bars=nbars,
        skipped=skips,
        n_tracks=max(len(notes_all[f].inst) for f in live),
        t0=np.concatenate(t0s),
        win_file=win_file,
        win_bars=np.asarray(nbars, np.int64)[win_file],
        start=np.concatenate([notes_all[f].start for f in live]) + shift,
        end=np.concatenate([notes_all[f].end for f in live]) + shift,
        pitch=np.concatenate([notes_all[f].pitch for f in live]),
        track=np.concatenate([notes_all[f].track for f in live]),
        drum=np.concatenate([np.asarray(notes_all[f].is_drum, bool)[notes_all[f].track] for f in live]),
    )


def encode_batch(
    scores: list[symusic.Score],
    options: MMMOptions = MMMOptions(),
    *,
    keys: list[str] | None = None,
    placeholder: bool = False,
) -> list[Encoded | BadInput]:
    """Encode many scores in one vectorised pass; per score an `Encoded` or the `BadInput` it raised.

    All windows of all pieces are laid on one time line (pieces far enough apart that no window reaches
    another piece), so the work is a fixed number of numpy calls per batch, not per note or per piece.
    `keys` (one per score, e.g. a content hash) seed track permutation and fill. With `placeholder=True`
    every DENSITY token is `DENSITY_PLACEHOLDER` and `density_counts` holds what it measures, so that a
    pipeline can fill in bins computed over the whole dataset afterwards.
    """
    ids_ = BlockIds(options.density_bins)
    keys = keys or [""] * len(scores)
    results: list[Encoded | BadInput] = [BadInput("not encoded")] * len(scores)
    notes_all = canonical_batch(scores, voices=options.voices)
    regroups: list[list[str]] = [[] for _ in scores]
    line = _timeline(notes_all, options, results, regroups)
    if line is None:
        return results
    live, nbars, skips = line.live, line.bars, line.skipped
    t0, win_file, win_bars = line.t0, line.win_file, line.win_bars
    start, end, pitch_all, track_all, drum_all = line.start, line.end, line.pitch, line.track, line.drum
    n_files, n_tracks, n_win = len(live), line.n_tracks, len(t0)
    length = win_bars * STEPS_PER_BAR
    n_bars = int(win_bars.max())

    # (note, window) pairs: window w holds note i when t0[w] < end[i] and t0[w] + length[w] > start[i].
    lo = np.searchsorted(t0 + length, start, side="right")
    hi = np.searchsorted(t0, end, side="left")
    count = np.maximum(hi - lo, 0)
    grid, pairs = n_win * n_tracks * n_bars, int(count.sum())
    if grid > MAX_GRID_CELLS or pairs > MAX_NOTE_WINDOWS:
        if len(scores) == 1:
            return [
                BadInput(
                    f"too large to encode: {n_tracks} tracks over {n_win} windows of {n_bars} bars and "
                    f"{pairs} (note, window) pairs (limits {MAX_GRID_CELLS} cells, {MAX_NOTE_WINDOWS} pairs)"
                )
            ]
        half = len(scores) // 2  # the dense (window, track, bar) grid grows with the product: split the batch
        return encode_batch(scores[:half], options, keys=keys[:half], placeholder=placeholder) + encode_batch(
            scores[half:], options, keys=keys[half:], placeholder=placeholder
        )
    note = np.repeat(np.arange(len(count)), count)
    win = _ranges(lo, count)
    tr, pitch, drum = track_all[note], pitch_all[note], drum_all[note]
    rs = np.clip(start[note] - t0[win], 0, length[win])
    re = np.clip(end[note] - t0[win], 0, length[win])

    # Track order per window: as in the file, or a permutation seeded by the file's key.
    if options.permute_tracks:
        rank = np.empty((n_win, n_tracks))
        for i, f in enumerate(live):
            rows = win_file == i
            r = np.random.default_rng(_file_seed(options.seed, keys[f])).random((int(rows.sum()), n_tracks))
            r[:, len(notes_all[f].inst) :] = np.inf
            rank[rows] = r
        slot_of = np.argsort(np.argsort(rank, axis=1, kind="stable"), axis=1, kind="stable")
    else:
        slot_of = np.broadcast_to(np.arange(n_tracks), (n_win, n_tracks))
    slot = slot_of[win, tr]

    # Events: off (kind 0) before on (kind 1) at the same step; offs belong to the bar they end in.
    on_bar = rs // STEPS_PER_BAR
    off_bar = (re - 1) // STEPS_PER_BAR
    n_pairs = len(win)
    ev_group = np.concatenate([(win * n_tracks + slot) * n_bars + off_bar, (win * n_tracks + slot) * n_bars + on_bar])
    ev_pos = np.concatenate([re - off_bar * STEPS_PER_BAR, rs - on_bar * STEPS_PER_BAR])
    ev_pitch = np.concatenate([pitch, pitch])
    ev_kind = np.zeros(2 * n_pairs, np.int64)
    ev_kind[n_pairs:] = 1
    order = np.argsort(((ev_group * 17 + ev_pos) * 2 + ev_kind) * 128 + ev_pitch)  # keys are unique
    group, pos, kind, ev_pitch = ev_group[order], ev_pos[order], ev_kind[order], ev_pitch[order]
    prev = np.zeros(len(pos), np.int64)
    if len(pos) > 1:
        prev[1:] = np.where(group[1:] == group[:-1], pos[:-1], 0)
    delta = pos - prev
    tokens = np.where(kind == 1, ids_.note_on, ids_.note_off) + ev_pitch
    # Each event becomes [TIME_DELTA=delta] token: two slots per event, the unused ones dropped.
    has_delta = delta > 0
    pair = np.stack([ids_.time_delta + delta - 1, tokens], axis=1).reshape(-1)
    used = np.stack([has_delta, np.ones(len(delta), bool)], axis=1).reshape(-1)
    body = pair[used]
    reps = 1 + has_delta
    body_group = np.repeat(group, reps)
    shiftable = np.stack([np.zeros(len(delta), bool), ~np.concatenate([drum, drum])[order]], axis=1).reshape(-1)[used]

    # Skeleton sizes: (W, K, B) body lengths; a track takes part in a window when it has notes there.
    n_groups = n_win * n_tracks * n_bars
    group_size = np.bincount(body_group, minlength=n_groups)
    body_len = group_size.reshape(n_win, n_tracks, n_bars)
    pair_count = np.bincount(win * n_tracks + slot, minlength=n_win * n_tracks).reshape(n_win, n_tracks)
    present = pair_count > 0
    bar_valid = np.arange(n_bars)[None, :] < win_bars[:, None]  # (W, B)
    bar_size = (body_len + 2) * bar_valid[:, None, :]
    block = np.where(present, 4 + bar_size.sum(axis=2), 0)  # (W, K)
    win_len = np.where(present.any(axis=1), 2 + block.sum(axis=1), 0)  # (W,)
    win_start = np.cumsum(win_len) - win_len
    track_start = win_start[:, None] + 1 + np.cumsum(block, axis=1) - block  # (W, K)
    bar_start = track_start[:, :, None] + 3 + np.cumsum(bar_size, axis=2) - bar_size  # (W, K, B)

    out = np.zeros(int(win_len.sum()), np.int64)
    shift_mask = np.zeros(len(out), bool)
    alive = win_len > 0
    out[win_start[alive]] = PIECE_START
    out[(win_start + win_len - 1)[alive]] = PIECE_END
    inst_ids = np.concatenate(
        [[_inst_id(n, ids_) for n in notes_all[f].inst] + [0] * (n_tracks - len(notes_all[f].inst)) for f in live]
    )
    inst_ids = np.asarray(inst_ids, np.int64).reshape(n_files, n_tracks)
    track_of_slot = np.argsort(slot_of, axis=1)  # (W, K): position -> track
    ts = track_start[present]
    out[ts] = TRACK_START
    out[ts + 1] = inst_ids[np.broadcast_to(win_file[:, None], present.shape)[present], track_of_slot[present]]
    out[ts + 2] = DENSITY_PLACEHOLDER
    out[(track_start + block - 1)[present]] = TRACK_END
    bars_on = present[:, :, None] & bar_valid[:, None, :]
    out[bar_start[bars_on]] = BAR_START
    out[(bar_start + body_len + 1)[bars_on]] = BAR_END
    group_first = np.cumsum(group_size) - group_size
    body_pos = bar_start.reshape(-1)[body_group] + 1 + np.arange(len(body)) - group_first[body_group]
    out[body_pos] = body
    shift_mask[body_pos] = shiftable
    density = pair_count[present]  # (W, K) by position, so this is the order of appearance

    # Transpositions: each window once per shift that keeps every pitched note inside 0..127.
    pitched = ~drum
    lo_p = np.full(n_win, 127)
    hi_p = np.zeros(n_win, np.int64)
    np.minimum.at(lo_p, win[pitched], pitch[pitched])
    np.maximum.at(hi_p, win[pitched], pitch[pitched])
    has_pitched = np.bincount(win[pitched], minlength=n_win) > 0
    shifts = np.arange(*options.transpose)
    ok = alive[:, None] & (lo_p[:, None] + shifts >= 0) & (hi_p[:, None] + shifts <= 127)  # (W, S)
    ok &= has_pitched[:, None] | (shifts == 0)[None, :]  # a drums-only window is the same at every shift
    seq_win, seq_shift = np.nonzero(ok)
    seq_len = win_len[seq_win]
    seq_file = win_file[seq_win]
    # The cap per piece: keep a piece's sequences while its running total stays under max_tokens.
    running = np.cumsum(seq_len)
    firsts = np.searchsorted(seq_file, np.arange(n_files))
    file_base = np.concatenate([[0], running])[firsts]  # tokens before each piece's first sequence (none: 0)
    within = running - file_base[seq_file]
    keep = within <= options.max_tokens
    capped = np.bincount(seq_file[~keep], minlength=n_files) > 0
    seq_win, seq_shift, seq_len, seq_file = seq_win[keep], seq_shift[keep], seq_len[keep], seq_file[keep]
    tracks_per_win = present.sum(axis=1)
    density_start = np.cumsum(tracks_per_win) - tracks_per_win
    gather = _ranges(win_start[seq_win], seq_len)
    ids = out[gather] + np.repeat(shifts[seq_shift], seq_len) * shift_mask[gather]
    dens = density[_ranges(density_start[seq_win], tracks_per_win[seq_win])]
    seq_bounds = np.searchsorted(seq_file, np.arange(n_files + 1))
    tok_off = np.concatenate([[0], np.cumsum(seq_len)])
    den_off = np.concatenate([[0], np.cumsum(tracks_per_win[seq_win])])
    if not placeholder:
        per_bar = dens / np.repeat(win_bars[seq_win], tracks_per_win[seq_win])
        ids[ids == DENSITY_PLACEHOLDER] = ids_.density + np.searchsorted(options.density_edges, per_bar, side="right")
    ids = ids.astype(np.uint16)
    for i, f in enumerate(live):
        a, b = seq_bounds[i], seq_bounds[i + 1]
        enc = Encoded(
            ids[tok_off[a] : tok_off[b]],
            tok_off[a : b + 1] - tok_off[a],
            dens[den_off[a] : den_off[b]],
            nbars[i],
            skips[i],
            bool(capped[i]),
            regroups[f],
        )
        if options.fill:
            enc = _apply_fill(enc, np.random.default_rng(_file_seed(options.seed + 1, keys[f])))
        results[f] = enc
    return results


def encode_ids(
    score: symusic.Score, options: MMMOptions = MMMOptions(), *, key: str = "", placeholder: bool = False
) -> Encoded:
    """Encode one score into token ids (all windows and transpositions); raises BadInput."""
    result = encode_batch([score], options, keys=[key], placeholder=placeholder)[0]
    if isinstance(result, BadInput):
        raise result
    return result


def _inst_id(name: str, ids_: BlockIds) -> int:
    if name == "DRUMS":
        return ids_.drums
    if name in VOICES:
        return ids_.voice + VOICES.index(name)
    return ids_.inst + int(name)


def density_bins(counts: np.ndarray, bars: int, edges: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """The DENSITY bin of each count of notes in a window of `bars` bars."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(counts) / bars, side="right")


def fill_density(encoded: Encoded, edges: tuple[float, ...] | np.ndarray, ids_: BlockIds | None = None) -> None:
    """Replace the DENSITY placeholders, in place, with the bins of `edges`."""
    ids_ = ids_ or BlockIds(len(edges) + 1)
    where = np.flatnonzero(encoded.ids == DENSITY_PLACEHOLDER)
    assert len(where) == len(encoded.density_counts), "one density count per DENSITY slot"
    encoded.ids[where] = ids_.density + density_bins(encoded.density_counts, encoded.bars, edges)


def _apply_fill(encoded: Encoded, rng: np.random.Generator) -> Encoded:
    """MMMBar: in each sequence, one non-empty bar's body moves to the end as FILL_START ... FILL_END."""
    seqs = []
    for i in range(encoded.sequences):
        seq = encoded.ids[encoded.offsets[i] : encoded.offsets[i + 1]]
        starts = np.flatnonzero(seq == BAR_START)
        ends = np.flatnonzero(seq == BAR_END)
        full = np.flatnonzero(ends - starts > 1)
        if len(full) == 0:
            seqs.append(seq)
            continue
        j = int(full[rng.integers(len(full))])
        a, b = starts[j] + 1, ends[j]
        seqs.append(np.concatenate([seq[:a], [FILL_IN], seq[b:-1], [FILL_START], seq[a:b], [FILL_END, PIECE_END]]))
    lengths = np.array([len(s) for s in seqs], np.int64)
    ids = np.concatenate(seqs).astype(np.uint16) if seqs else encoded.ids
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return Encoded(
        ids, offsets, encoded.density_counts, encoded.bars, encoded.skipped, encoded.capped, encoded.regrouped
    )


def _options(options: MMMOptions | None, overrides: dict) -> MMMOptions:
    if options is None:
        return MMMOptions(**overrides)
    if overrides:
        return replace(options, **overrides)
    return options


def encode(score: symusic.Score, options: MMMOptions | None = None, **overrides: object) -> list[str]:
    """Encode a whole 4/4 piece as one token sequence (the first sequence when windows are asked for)."""
    sequences = encode_windows(score, options, **overrides)
    if not sequences:
        raise BadInput("no 4/4 window could be encoded (only meters that regroup into 4/4 bars can be)")
    return sequences[0]


def encode_windows(score: symusic.Score, options: MMMOptions | None = None, **overrides: object) -> list[list[str]]:
    """Encode a piece into its windows (and transpositions) as token lists."""
    opts = _options(options, overrides)
    encoded = encode_ids(score, opts)
    vocab = np.array(vocabulary(opts.density_bins), dtype=object)
    words = vocab[encoded.ids].tolist()
    return [words[encoded.offsets[i] : encoded.offsets[i + 1]] for i in range(encoded.sequences)]


# ------------------------------------------------------------------------------------------ decode


def decode(
    tokens: str | list[str],
    *,
    tempo: float = 120.0,
    voice_program: int = 52,  # General MIDI choir aahs, as the built-in chorales carry
    velocity: int = 80,
) -> tuple[symusic.Score, list[str]]:
    """Decode tokens (a string or a list) into a score on the step grid (tpq 4), and the repairs made.

    Never raises on model output: unknown tokens, unclosed notes, NOTE_OFF without NOTE_ON, TIME_DELTA
    past the bar, missing BAR_END/TRACK_END/PIECE_END are repaired and listed (see `mmm_decode`).
    """
    return decode_tokens(tokens, tempo=tempo, voice_program=voice_program, velocity=velocity)
