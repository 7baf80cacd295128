"""One piece of the Markov composer being made: styles, registers, and every voice, one measure at a time.

    STYLES        chorale: a chord on every beat, the chord voices as block chords or inner parts, a bass line
                  from the low chain; lively: a chord every half bar, broken chords, off-beat or "pah" chords,
                  bass patterns (oom-pah, walking, octaves), melodies from the high chain
    Arrangement   the progression (`harmony.Progression`), the beats every voice shares (`lines.Beats`), each
                  melodic voice's `lines.Line`, the chord parts (`voicing.ChordParts`); `measure(i)` gives the
                  notes that start in measure i, for every voice

Measures are made in order, each voice in turn, and every voice sees the notes of the voices before it and
the chords of the next measure (a note may cross the bar line): `stream` and `compose` both call
`measure(0), measure(1), ...`, so they make the same piece. Melodic voices take registers an octave apart
(`REGISTERS`: where each line's chain lies, moved by octaves towards a target). In the last measure every
voice strikes the tonic chord together and holds it, the lowest note on the tonic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from orchestrion.markov import events as ev
from orchestrion.markov import harmony, voicing
from orchestrion.markov.lines import BAR, BEAT, Beats, Chain, Line, LineRules, NoteTuple

VELOCITY = {0: 84, 1: 76, 2: 60}
REGISTERS = {0: (72, 84, 60), 1: (47, 59)}  # target centres (MIDI) of the 1st, 2nd, ... voice of a kind, in turn
LOWEST, HIGHEST = 28, 108  # melodic voices are folded by octaves into this range
BAND = (40, 84)  # where the chord parts' homes lie


@dataclass(frozen=True)
class Style:
    """How a style sets out the voices (see the module docstring)."""

    name: str
    slots: int  # chords per bar
    lively: bool
    programs: dict[int, tuple[int, ...]]  # General MIDI programs by voice kind, taken in turn
    description: str


STYLES = {
    "chorale": Style("chorale", 4, False, {0: (40, 73, 71, 68), 1: (42, 32, 70, 58), 2: (48, 0, 19, 46)},
                     "a chord on every beat; block chords or inner parts; a bass line"),
    "lively": Style("lively", 2, True, {0: (80, 73, 11, 71), 1: (33, 32, 38, 43), 2: (0, 24, 46, 4)},
                    "a chord every half bar; broken, off-beat or 'pah' chords; bass patterns"),
}  # fmt: skip


def fold(pitch: int, low: int = LOWEST, high: int = HIGHEST) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


class Arrangement:
    """The voices of one piece, made measure by measure (`measure`, in order)."""

    def __init__(self, *, kinds: list[int], bars: int, tonic: int, mode: str, seed: int, style: Style,
                 chains: dict[int, Chain], harmony_matrix: np.ndarray, plan_matrix: np.ndarray, rules: LineRules, temperature: float,
                 penalty: float, top_k: int, top_p: float):  # fmt: skip
        self.kinds, self.bars, self.tonic, self.mode, self.style = kinds, bars, tonic, mode, style
        self.pull = rules.chord_pull  # chords fitted to the leads' notes, and the other lines to the chords
        self.beats = Beats(bars * 4)
        self.progression = harmony.Progression(
            harmony_matrix, plan_matrix, mode, bars, style.slots, random.Random(f"markov:{seed}:chords"),
            top_k=top_k, top_p=top_p, penalty=penalty, temperature=temperature,
        )  # fmt: skip
        self.slots: list[list[voicing.Slot]] = []  # per measure made so far
        shift = tonic if tonic <= 6 else tonic - 12
        self.lines: dict[int, Line] = {}
        self.patterns: dict[int, tuple[str, list[int], int]] = {}  # low voice (lively) -> (pattern, [last note], low)
        self.textures: dict[int, str] = {}
        self.held: dict[int, tuple[int, int]] = {}  # lively chord voice -> (its top pitch, since when)
        seen = {0: 0, 1: 0, 2: 0}
        for i, kind in enumerate(kinds):
            rng = random.Random(f"markov:{seed}:voice:{i}")
            nth = seen[kind]
            seen[kind] += 1
            if kind == 2:
                if style.lively:
                    options = (
                        ("arpeggio", "arpeggio down")
                        if nth % 3 == 0
                        else ("pah", "offbeat")
                        if nth % 3 == 1
                        else ("pad",)
                    )
                    self.textures[i] = options[rng.randrange(len(options))]
                continue
            if kind == 1 and style.lively:
                pattern = voicing.BASS_PATTERNS[(rng.randrange(3) + nth) % 3]
                low = 36 + 12 * (nth % 2)  # the second bass voice an octave up
                self.patterns[i] = (pattern, [voicing.bass_root(low + 7, tonic, low, low + 19)], low)
                continue
            chain = chains[kind]
            centre = ev.LOWEST_PITCH + chain.mean_tone() + shift
            targets = REGISTERS[kind]
            octave = 12 * round((targets[nth % len(targets)] - centre) / 12)
            pitch_of = [fold(ev.LOWEST_PITCH + t + shift + octave) for t in range(ev.N_TONES)]
            self.lines[i] = Line(chain, rng, i, bass=kind == 1, pitch_of=pitch_of, velocity=VELOCITY[kind],
                                 beats=self.beats, rules=rules, bars=bars)  # fmt: skip
        # The leads, drawn before the chords (which are fitted to them): the first high and the first low line.
        self.leads = [
            min(v for v in self.lines if kinds[v] == k) for k in (0, 1) if k in (kinds[v] for v in self.lines)
        ]
        for i in self.leads:
            self.lines[i].ties = True  # a lead may hold a note over the bar line; the chords follow it
        chord_voices = [i for i, k in enumerate(kinds) if k == 2]
        self.chord_voices = {v: n for n, v in enumerate(chord_voices)}
        n = len(chord_voices)
        # One chord voice plays the inner voices of a four-part texture (two parts between the melody and
        # the bass line; three without a bass line), two voices two parts each, three or more one each.
        bass_line = any(kinds[v] == 1 for v in self.lines)
        self.per_voice = 1 if style.lively or n >= 3 else 2 if n == 2 or bass_line else 3
        parts = max(1, n * self.per_voice)
        # Homes a few semitones apart around the middle of the range (G3 for the chorale's inner parts,
        # F3 for the lively style's chords), squeezed into BAND when there are many.
        centre, wide = (59, 7 if parts == 2 else 5 if parts <= 4 else 4) if not style.lively else (53, 6)
        spacing = min(wide, (BAND[1] - BAND[0]) / max(parts - 1, 1))
        low = round(min(max(BAND[0], centre - spacing * (parts - 1) / 2), BAND[1] - spacing * (parts - 1)))
        spacing = round(spacing) if spacing >= 1 else 1
        tops = [(v + 1) * self.per_voice - 1 for v in range(n)] if n else [parts - 1]  # each chord voice's top
        self.parts = voicing.ChordParts(voicing.part_homes(parts, low, spacing), rules.cap, tops)

    # ------------------------------------------------------------------------------------ harmony

    def _targets(self, index: int) -> None:
        """Put the plan's chords (I, V) on the beats of measure `index` that the plan fixes, before the
        lead is drawn, so that it lands on their tones; the chord drawn later may add a seventh."""
        if index >= self.bars:
            return
        steps = BAR // self.style.slots
        for s in range(self.style.slots):
            target = harmony.slot_target(index, s, self.style.slots, self.bars)
            if target is not None:
                sym = harmony.TONIC[self.mode][0] if target == "I" else harmony.DOMINANT[0]
                mask, root = harmony.transpose_mask(sym, self.tonic), (self.tonic + (7 if target == "V" else 0)) % 12
                start = index * BAR + s * steps
                for beat in range(start // BEAT, (start + steps) // BEAT):
                    self.beats.set_chord(beat, mask, root)

    def _chords(self, index: int) -> None:
        """Draw the chords of measure `index`, fitted to the lead's notes on its beats, and voice them."""
        steps = BAR // self.style.slots
        measure = []
        for s in range(self.style.slots):
            start = index * BAR + s * steps
            length = BAR if index == self.bars - 1 and self.bars > 1 else steps  # the last chord: held a bar
            sounding = [self.beats.sounding[b] for b in range(start // BEAT, (start + length) // BEAT)]
            sym = self.progression.next(harmony.fit(sounding, self.tonic, self.pull))
            pcs = harmony.transpose_pcs(sym, self.tonic)
            mask = harmony.transpose_mask(sym, self.tonic)
            for beat in range(start // BEAT, (start + length) // BEAT):
                self.beats.set_chord(beat, mask, pcs[0])
            voiced = self.parts.voice(pcs, start, length, self.beats.parallel, self.beats.sounding[start // BEAT])
            measure.append((start, length, pcs, voiced))
            if length == BAR:
                break
        self.slots.append(measure)

    # ------------------------------------------------------------------------------------- voices

    def measure(self, index: int) -> list[NoteTuple]:
        """Every voice's notes that start in measure `index` (call in order from 0).

        The leads (the first high and the first low line: the outer voices) are drawn first, free but for
        the plan's cadences and each other; the chords are then drawn to fit them; chord voices and bass
        patterns follow the chords; the other melodic lines, in voice order, fit around all of them.
        """
        self._targets(index)
        self._targets(index + 1)
        made: dict[int, list[NoteTuple]] = {}
        for i in self.leads:
            made[i] = self.lines[i].measure(index)
        self._chords(index)
        slots = self.slots[index]
        final = index == self.bars - 1
        for i in range(len(self.kinds)):
            if i in self.patterns:
                pattern, last, low = self.patterns[i]
                if final:
                    root = voicing.bass_root(last[0], slots[0][2][0], low, low + 19)
                    made[i] = [(i, root, slots[0][0], BAR, VELOCITY[1] + 6)]
                else:
                    made[i], last[0] = voicing.bass(i, pattern, slots, (), last[0], VELOCITY[1], low)
            elif i not in self.lines:
                made[i] = self._chord_voice(i, slots, final)
            else:
                continue
            self.beats.register(i, made[i])
        for i, line in self.lines.items():
            if i not in self.leads:
                made[i] = line.measure(index)
        notes = [n for i in range(len(self.kinds)) for n in made[i]]
        return self._home(notes) if final else notes

    def _chord_voice(self, voice: int, slots: list[voicing.Slot], final: bool) -> list[NoteTuple]:
        n = self.chord_voices[voice]
        lo, hi = n * self.per_voice, (n + 1) * self.per_voice
        mine = [(start, steps, pcs, pitches[lo:hi]) for start, steps, pcs, pitches in slots]
        texture = self.textures.get(voice, "pad")
        if self.style.lively:  # a close chord on the voice's base, its top note under the hold cap too
            mine = [(s, d, pcs, self._close(voice, p[0], pcs, s, d)) for s, d, pcs, p in mine]
            if not final and texture != "pad":
                return voicing.lively_chords(voice, texture, mine, VELOCITY[2])
        return voicing.block(voice, mine, VELOCITY[2])

    def _close(self, voice: int, base: int, pcs: tuple[int, ...], start: int, steps: int) -> list[int]:
        """A close chord from `base` whose top note moves up a chord tone when it would be held past the cap."""
        tones = voicing.close_chord(base, pcs, 3)
        top, since = self.held.get(voice, (-1, 0))
        if tones[-1] == top and start + steps - since > self.parts.cap:
            tones[-1] = voicing.next_up(tones[-1], pcs)
        if tones[-1] != top:
            self.held[voice] = (tones[-1], start)
        return tones

    def _home(self, notes: list[NoteTuple]) -> list[NoteTuple]:
        """The last chord with the tonic as its lowest note: the lowest note sounding at the last onset
        moves down (or, near the bottom, up) to the nearest tonic until the lowest is one."""
        if not notes:
            return notes
        last = max(n[2] for n in notes)
        for _ in range(4):
            sounding = [j for j, n in enumerate(notes) if n[2] <= last < n[2] + n[3]]
            j = min(sounding, key=lambda k: notes[k][1])
            voice, pitch, start, steps, velocity = notes[j]
            if (pitch - self.tonic) % 12 == 0:
                break
            down = pitch - ((pitch - self.tonic) % 12)
            notes[j] = (voice, down if down >= LOWEST else down + 12, start, steps, velocity)
        return notes
