"""`orchestrion.abc.loops`: what counts as music a model looped in, on hand-made tunes and real ones."""

from __future__ import annotations

import pytest

from orchestrion.abc.loops import loop_reason

HEAD = "X:1\nT:Test\nM:4/4\nL:1/8\nK:G\n"
# The Kesh (a real jig, as the corpus writes it): none of the checks may fire on it.
KESH = (
    "X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:G\n"
    "|:G3 GAB|A3 ABd|edd gdd|edB dBA|G3 GAB|A3 ABd|edd gdB|AGF G3:|\n"
    "|:BAB dBd|ege dBA|BAB dBG|ABA AGA|BAB dBd|ege dBd|gfg aga|bgf g3:|\n"
)


def test_a_real_tune_is_not_a_loop() -> None:
    assert loop_reason(KESH) is None


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("G2DDGDGD|G2DDGDGD|B2DDDGDD|G2DDDDGD|A2DDGDDG|G2DDDGDD|G2DDGDDG|G2DDGDD2|\n", "distinct pitches"),
        ("GABc dddd|ddde fgab|" * 4 + "\n", "in a row"),
        ("AcAGEE2B|AcAGEE2B|AcAGEE2B|d2cBAGFE|AcAGEE2B|G2ABcdef|g2fedcBA|G8|\n", "makes up"),
        ("GABc dedc|BAGF EDEF|z8|GABc defg|z4 z4|agfe d4|\n", "rests only"),
        ("GzAz Bzcz|dzcz BzAz|GABc defg|agfe dcBA|\n", "rests are"),
    ],
)
def test_each_kind_of_loop_is_named(body: str, why: str) -> None:
    reason = loop_reason(HEAD + body)
    assert reason is not None and why in reason


def test_short_tunes_may_repeat_their_figure() -> None:
    assert loop_reason(HEAD + "GABG GABG|GABG GABG|\n") is None


def test_grace_notes_and_chord_symbols_are_not_notes() -> None:
    # Without the "G" chord symbols and {g} graces this tune has 8 pitches and no run.
    tune = HEAD + '"G"{g}GABc dedc|"G"{g}BAGF EDEF|GABc defg|agfe dcBA|GABc dedc|BAGF EDEF|GABc defg|agfe d4|\n'
    assert loop_reason(tune) is None


def test_the_sampler_resamples_looped_tunes_and_says_so() -> None:
    # At temperature 0.3 the shipped model falls into loops often: such draws are refused and sampled again
    # (up to `abc_retries` times), and a tune that still loops after the last retry says why in its report.
    from orchestrion.core.sampling import SamplingConfig
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest

    composer = load_composer("builtin:folk")
    retries = []
    for seed in range(4):
        piece = composer.compose(ComposeRequest(model="builtin:folk", rhythm="reel", seed=seed, temperature=0.3))
        assert piece.report["looped"] == loop_reason(piece.abc), piece.abc
        assert piece.report["looped"] is None or piece.report["retries"] == SamplingConfig.abc_retries
        retries.append(piece.report["retries"])
    assert sum(retries) > 0, "no draw was refused at temperature 0.3: the check is not being exercised"
