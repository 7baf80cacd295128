"""Durations as whole numbers of ticks, and a fast `NamedTuple._replace`: what the ABC automata run on.

`TICKS` ticks make a whole note: exact for units down to 1/64, lengths down to /16, broken rhythms and tuplets
of 2 to 9; anything finer falls back to a `Fraction` of ticks (Python mixes the two), so that a step of an
automaton is integer arithmetic and its state hashes fast.
"""

from __future__ import annotations

from fractions import Fraction

TICKS = 2**10 * 3**2 * 5 * 7  # ticks to a whole note: exact for the durations ABC tunes use


def ticks(length: Fraction) -> int | Fraction:
    """A duration in whole notes as ticks (an int; a Fraction only for durations finer than ticks)."""
    value = length * TICKS
    return value.numerator if value.denominator == 1 else value


def whole_notes(duration: int | Fraction) -> Fraction:
    """Ticks back to a `Fraction` of a whole note."""
    return Fraction(duration) / TICKS


_FIELD_INDEX: dict[type, dict[str, int]] = {}


def replaced(state: tuple, **changes: object) -> tuple:
    """`NamedTuple._replace`, about twice as fast: the automata call it for every character they read."""
    cls = type(state)
    index = _FIELD_INDEX.get(cls)
    if index is None:
        index = _FIELD_INDEX[cls] = {f: i for i, f in enumerate(cls._fields)}
    values = list(state)
    for name, value in changes.items():
        values[index[name]] = value
    return tuple.__new__(cls, values)


def scaled(base: int | Fraction, num: int, den: int) -> int | Fraction:
    """base * num / den, an int whenever it divides."""
    if isinstance(base, int):
        q, r = divmod(base * num, den)
        return q if r == 0 else Fraction(base * num, den)
    return base * num / den
