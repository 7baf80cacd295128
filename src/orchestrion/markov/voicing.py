"""Voicing for the Markov composer: chords as notes for 1-16 chord voices, the lively textures, bass patterns.

All chord voices of a piece share one set of **parts**, each with a home pitch in its own register
(`part_homes`, a few semitones apart, low to high). For every chord of the progression `ChordParts.voice`
moves each part to the chord tone nearest to where it was (within 7 semitones of its home, so it keeps its
register), then makes sure the root, third, seventh and fifth are all taken as far as the parts go, that no
two parts sound the same pitch, and that no part holds one pitch longer than the hold cap. Chord voices then
take the parts in order: one voice over three parts plays block chords, two voices two parts each, three or
more one part each (monophonic lines on distinct chord tones in separate registers).

Textures turn a voice's parts into notes: `block` holds each chord while it repeats within the measure;
the lively style's chord voices play `arpeggio` (broken chords in 8ths), `offbeat` (chords on the "and" of
each beat) or `pah` (chords on beats 2 and 4), and its low voices bass patterns (`bass`: root and fifth on
1 and 3, a walking line, or octaves in 8ths). Every note these make is a tone of the chord that sounds, so
they never clash with the harmony the melodies are fitted to.
"""

from __future__ import annotations

from collections.abc import Callable

NoteTuple = tuple[int, int, int, int, int]  # (voice, MIDI pitch, start step, steps, velocity)
WINDOW = 7  # a part stays within this many semitones of its home
CHORD_TEXTURES = ("arpeggio", "pah", "offbeat", "arpeggio down")
BASS_PATTERNS = ("oompah", "walking", "octaves")


def part_homes(parts: int, low: int, spacing: int) -> list[int]:
    return [low + spacing * k for k in range(parts)]


def nearest(pitch: int, pc: int) -> int:
    """The pitch of class `pc` nearest to `pitch` (the lower one on a tritone)."""
    return pitch + ((pc - pitch + 6) % 12) - 6


def in_window(pitch: int, home: int) -> int:
    while pitch > home + WINDOW:
        pitch -= 12
    while pitch < home - WINDOW:
        pitch += 12
    return pitch


class ChordParts:
    """The parts' pitches from chord to chord (voice leading within registers, hold cap, no unisons, no
    parallel fifths or octaves in the top line of each chord voice)."""

    def __init__(self, homes: list[int], cap_steps: int, tops: list[int] | None = None):
        self.homes = homes
        self.cap = cap_steps
        self.tops = tops if tops is not None else [len(homes) - 1]  # the parts that are a chord voice's top
        self.pitches: list[int] = []
        self.since: dict[int, int] = {}  # pitch -> the step from which it has sounded without a break

    def voice(self, pcs: tuple[int, ...], now: int, steps: int,
              parallel: Callable[[int, int, int], bool] | None = None, present: int = 0) -> list[int]:  # fmt: skip
        """The parts' pitches for a chord of pitch classes `pcs` (root, third, fifth[, seventh]) sounding from
        step `now` for `steps` steps; `parallel(before, pitch, now)` says which moves would go in parallel
        fifths or octaves with the melodies, `present` (a pitch-class mask) which tones they already sound."""
        homes, old = self.homes, self.pitches or self.homes
        banned = {p for p, s in self.since.items() if now + steps - s > self.cap}  # would be held past the cap

        def place(k: int, pc: int) -> int | None:
            """Part k's nearest pitch of class pc within its window, never a banned one."""
            p = in_window(nearest(old[k], pc), homes[k])
            return None if p in banned else p

        new = []
        for k in range(len(homes)):
            options = [p for p in (place(k, pc) for pc in pcs) if p is not None]
            new.append(min(options, key=lambda p: abs(p - old[k])) if options else old[k])
        # Take the chord's tones in order of need: root, third, seventh, fifth.
        need = [pcs[0], pcs[1], *pcs[3:], pcs[2]] if len(pcs) > 2 else list(pcs)
        need = [pc for pc in need if not present >> pc & 1] + [pc for pc in need if present >> pc & 1]
        wanted = need[: len(homes)]
        for pc in wanted:
            have = [p % 12 for p in new]
            if pc in have:
                continue
            moves = [
                (abs(q - new[k]), k, q)
                for k, p in enumerate(new)
                if (have.count(p % 12) > 1 or p % 12 not in wanted) and (q := place(k, pc)) is not None
            ]
            if moves:
                _, k, q = min(moves)
                new[k] = q
        # No two parts on one pitch, parts in order from low to high.
        new.sort()
        for k in range(1, len(new)):
            while new[k] <= new[k - 1] or new[k] in banned:
                new[k] = next_up(max(new[k], new[k - 1]), pcs)
        if self.pitches:
            self._out_of_parallels(new, old, pcs, now, banned, parallel)
        _cover(new, pcs[:2], pcs, banned)
        self.since = {p: self.since.get(p, now) if p in self.pitches else now for p in new}
        self.pitches = new
        return new

    def _out_of_parallels(self, new: list[int], old: list[int], pcs: tuple[int, ...], now: int, banned: set[int],
                          parallel: Callable[[int, int, int], bool] | None) -> None:  # fmt: skip
        """Move a top part that would go in parallel fifths or octaves (with a melody or another top) to
        the nearest other chord tone that keeps the parts in order, where there is one."""
        fixed: list[int] = []
        for k in sorted(self.tops, reverse=True):

            def bad(q: int, k: int = k) -> bool:
                if parallel is not None and parallel(old[k], q, now):
                    return True
                return any(_parallel(old[k], q, old[j], new[j]) for j in fixed)

            if bad(new[k]):
                low = new[k - 1] if k > 0 else -1
                high = new[k + 1] if k + 1 < len(new) else 200
                options = [q for pc in pcs for q in (nearest(old[k], pc), nearest(old[k], pc) + 12,
                           nearest(old[k], pc) - 12) if low < q < high and q not in banned and abs(q - old[k]) <= 7
                           and not bad(q)]  # fmt: skip
                if options:
                    new[k] = min(options, key=lambda q: abs(q - old[k]))
            fixed.append(k)


def _cover(new: list[int], needed: tuple[int, ...], pcs: tuple[int, ...], banned: set[int]) -> None:
    """Put a needed pitch class (root, third) that no part sounds on a part whose class another part doubles,
    between its neighbours, where one fits."""
    for pc in needed:
        have = [p % 12 for p in new]
        if pc in have or len(new) < len(needed):
            continue
        for k in sorted(range(len(new)), key=lambda j: -have.count(have[j])):
            if have.count(have[k]) < 2:
                break
            low, high = (new[k - 1] if k else -1), (new[k + 1] if k + 1 < len(new) else 200)
            options = [q for q in (nearest(new[k], pc), nearest(new[k], pc) + 12, nearest(new[k], pc) - 12)
                       if low < q < high and q not in banned]  # fmt: skip
            if options:
                new[k] = min(options, key=lambda q: abs(q - new[k]))
                break


def _parallel(a0: int, a1: int, b0: int, b1: int) -> bool:
    """Do two voices moving a0 -> a1 and b0 -> b1 go in parallel fifths or octaves (unisons too)?"""
    if a0 == a1 or b0 == b1 or (a1 > a0) != (b1 > b0):
        return False
    interval = abs(a0 - b0) % 12
    return interval in (0, 7) and abs(a1 - b1) % 12 == interval


def next_up(pitch: int, pcs: tuple[int, ...]) -> int:
    return min(nearest(pitch, pc) + (12 if nearest(pitch, pc) <= pitch else 0) for pc in pcs)


def close_chord(base: int, pcs: tuple[int, ...], size: int = 3) -> list[int]:
    """`size` chord tones from `base` upwards (base first)."""
    notes = [base]
    while len(notes) < size:
        notes.append(next_up(notes[-1], pcs))
    return notes


# ------------------------------------------------------------------------------------------ textures

Slot = tuple[int, int, tuple[int, ...], list[int]]  # (start step, steps, chord pitch classes, part pitches)


def block(voice: int, slots: list[Slot], velocity: int) -> list[NoteTuple]:
    """Each slot's pitches struck together, held while the next slot repeats all of them (within the measure)."""
    notes: list[NoteTuple] = []
    held: list[int] = []
    for start, steps, _, pitches in slots:
        if held and pitches == held and notes[-1][2] + notes[-1][3] == start:
            for j in range(len(notes) - len(pitches), len(notes)):
                v, q, s, d, vel = notes[j]
                notes[j] = (v, q, s, d + steps, vel)
        else:
            notes += [(voice, p, start, steps, velocity) for p in pitches]
        held = list(pitches)
    return notes


def lively_chords(voice: int, texture: str, slots: list[Slot], velocity: int) -> list[NoteTuple]:
    """A chord voice of the lively style over its slots; each slot's pitches are the chord it plays (a close
    chord, lowest first): broken in 8ths, struck on the off-beats, or on beats 2 and 4."""
    notes: list[NoteTuple] = []
    for start, steps, _, tones in slots:
        if texture.startswith("arpeggio"):
            order = [2, 1, 0, 1] if texture.endswith("down") else [0, 1, 2, 1]
            for j, t in enumerate(range(start, start + steps, 6)):
                notes.append((voice, tones[order[j % 4] % len(tones)], t, 6, velocity + (0 if j % 2 else 6)))
        elif texture == "pah":
            for t in range(start, start + steps, 24):
                if t + 12 < start + steps:
                    notes += [(voice, p, t + 12, 10, velocity) for p in tones]
        else:  # offbeat
            for t in range(start + 6, start + steps, 12):
                notes += [(voice, p, t, 5, velocity) for p in tones]
    return notes


def bass_root(previous: int, pc: int, low: int = 36, high: int = 55) -> int:
    p = nearest(previous, pc)
    while p < low:
        p += 12
    while p > high:
        p -= 12
    return p


def bass(voice: int, pattern: str, slots: list[Slot], after: tuple[int, ...], last: int, velocity: int,
         low: int = 36) -> tuple[list[NoteTuple], int]:  # fmt: skip
    """A bass pattern over one measure's slots, its roots in `low`..`low` + 19: (notes, the last note, for
    the next measure). Each root is the one nearest to the note before (to the lower octave of a note above
    the range), so the line moves by steps and fifths, an octave at most.

    `after` is the chord that follows the measure (for the walking line's last step into it).
    """
    notes: list[NoteTuple] = []
    high = low + 19
    for n, (start, steps, pcs, _) in enumerate(slots):
        root = bass_root(last - 12 if last > high else last, pcs[0], low, high)
        fifth = nearest(root + 7, pcs[2]) if len(pcs) > 2 else root
        following = slots[n + 1][2] if n + 1 < len(slots) else after
        same_as_before = n > 0 and slots[n - 1][2] == pcs
        if pattern == "oompah":
            for j, t in enumerate(range(start, start + steps, 24)):
                first = root if (j == 0 and not same_as_before) else fifth if fifth != root else root
                notes.append((voice, first, t, 12, velocity + 6))
        elif pattern == "walking":
            approach = fifth
            if following and following[0] != pcs[0]:  # the chord tone nearest to the next root
                target = bass_root(root, following[0], low, high)
                approach = min((nearest(target, pc) for pc in pcs if nearest(target, pc) != target),
                               key=lambda p: abs(p - target), default=root)  # fmt: skip
            beats = list(range(start, start + steps, 12))
            line = [root, nearest(root + 4, pcs[1]), fifth, approach] if len(beats) >= 4 else [root, approach]
            for j, t in enumerate(beats):
                notes.append((voice, line[j % len(line)], t, 11, velocity))
        else:  # octaves, starting on whichever octave lies nearer the note before
            high_first = abs(root + 12 - last) < abs(root - last)
            for j, t in enumerate(range(start, start + steps, 6)):
                notes.append((voice, root + (12 if (j % 2 == 0) == high_first else 0), t, 5,
                              velocity + (4 if j % 4 == 0 else 0)))  # fmt: skip
        last = notes[-1][1] if notes else root
    return notes, last
