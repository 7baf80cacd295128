"""Tune types (the `R:` field): the meters each is written in, its tempo, and whether it is a dance tune.

    rhythm_named("Slip-Jig") -> RHYTHMS["slip jig"]      (case, hyphens, spaces and a plural s ignored)
    RHYTHMS["jig"].meters == ("6/8",)                    the first is the default
    RHYTHMS["jig"].quarter_tempo("6/8") == 174.0         quarter notes per minute (ComposeRequest.tempo)
    tempo_field(174.0, "6/8") == "Q:3/8=116"

A dance tune (`dance=True`) comes in the two 8-bar strains form by default (`orchestrion.abc.body`); set
dances, long dances, planxties, airs, songs and laments are free in form.
Tempos are those of a session played at a moderate pace, as beats per minute: the beat is the quarter
note in simple meters and the dotted quarter in compound ones (6/8, 9/8, 12/8).
Every name here is one of `orchestrion.evaluation.abc_metrics.KNOWN_RHYTHMS` (a test checks it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrion.abc.meter import is_compound

ANY_METER = ("4/4", "3/4", "2/4", "6/8", "9/8", "12/8", "3/2", "C", "C|", "2/2", "3/8", "6/4")
COMMON_TIME = ("4/4", "C", "C|", "2/2")


@dataclass(frozen=True)
class Rhythm:
    name: str
    meters: tuple[str, ...]  # the meters it is written in; the first is the default
    tempo: float  # beats per minute (quarters in simple meters, dotted quarters in compound ones)
    dance: bool = True  # two 8-bar strains by default

    @property
    def meter(self) -> str:
        return self.meters[0]

    def fits(self, meter: str) -> bool:
        return _meter_key(meter) in {_meter_key(m) for m in self.meters}

    def quarter_tempo(self, meter: str | None = None) -> float:
        """Quarter notes per minute in `meter` (default: the rhythm's own)."""
        return self.tempo * (1.5 if is_compound(meter or self.meter) else 1.0)


def _r(name: str, meters: tuple[str, ...], tempo: float, dance: bool = True) -> tuple[str, Rhythm]:
    return name, Rhythm(name, meters, tempo, dance)


RHYTHMS: dict[str, Rhythm] = dict(
    [
        _r("reel", COMMON_TIME, 200),
        _r("jig", ("6/8",), 116),
        _r("double jig", ("6/8",), 116),
        _r("single jig", ("6/8", "12/8"), 120),
        _r("slip jig", ("9/8",), 120),
        _r("hop jig", ("9/8",), 120),
        _r("hornpipe", ("4/4", "C", "C|", "2/4"), 160),
        _r("polka", ("2/4",), 140),
        _r("slide", ("12/8",), 130),
        _r("march", ("2/4", "6/8", "4/4", "C", "C|"), 112),
        _r("quickstep", ("2/4", "6/8"), 120),
        _r("strathspey", ("4/4", "C"), 130),
        _r("barndance", ("4/4", "C", "C|"), 160),
        _r("schottische", ("4/4", "C", "C|", "2/4"), 160),
        _r("fling", ("4/4", "C"), 160),
        _r("highland fling", ("4/4", "C"), 160),
        _r("highland", ("4/4", "C"), 160),
        _r("clog", ("4/4", "C", "C|", "2/4"), 160),
        _r("march jig", ("6/8",), 112),
        _r("two step", ("6/8", "2/4"), 120),
        _r("reel jig", ("6/8",), 116),
        _r("waltz", ("3/4",), 150),
        _r("mazurka", ("3/4",), 140),
        _r("polska", ("3/4",), 120),
        _r("minuet", ("3/4",), 110),
        _r("three two", ("3/2",), 160),
        _r("set dance", ("6/8", "4/4", "C", "C|", "2/4"), 112, dance=False),
        _r("country dance", ("6/8", "2/4", "4/4", "C", "C|"), 112),
        _r("long dance", ("6/8", "4/4", "C"), 112, dance=False),
        _r("gavotte", ("4/4", "C", "C|", "2/2"), 110),
        _r("bourree", ("C|", "2/2", "4/4"), 130),
        _r("walkaround", ("2/4", "4/4"), 110),
        _r("planxty", ("6/8", "3/4"), 100, dance=False),
        _r("air", ANY_METER, 90, dance=False),
        _r("song", ANY_METER, 100, dance=False),
        _r("lament", ANY_METER, 70, dance=False),
    ]
)


def _key(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


_BY_KEY = {_key(name): rhythm for name, rhythm in RHYTHMS.items()}


def _meter_key(meter: str) -> str:
    return meter.replace(" ", "")


def rhythm_named(text: str | None) -> Rhythm | None:
    """The rhythm a name means ('Reel', 'reels', 'slip-jig', 'SlipJig'), or None for an unknown one."""
    if not text:
        return None
    key = _key(text)
    return _BY_KEY.get(key) or (_BY_KEY.get(key[:-1]) if key.endswith("s") else None)


def rhythms_for_meter(meter: str | None) -> list[Rhythm]:
    """The rhythms written in `meter` (all of them when no meter is given)."""
    return [r for r in RHYTHMS.values() if meter is None or r.fits(meter)]


def tempo_field(quarter_tempo: float, meter: str | None) -> str:
    """The `Q:` field for a tempo in quarter notes per minute: the dotted quarter in compound meters."""
    if meter and is_compound(meter):
        return f"Q:3/8={round(quarter_tempo / 1.5)}"
    return f"Q:1/4={round(quarter_tempo)}"
