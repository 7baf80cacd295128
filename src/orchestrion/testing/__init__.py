"""Helpers for tests and benchmarks, shipped so that both use the same ones; nothing at run time imports them.

    datasets      tiny token datasets (mmm, ABC) written the way the encoders write theirs
    fuzz_inputs   seeded mutators and generators of MIDI, WAV, ABC and mmm inputs
    fuzzing       the harness that feeds them to every reader and classifies each run
    local_ray     a Ray cluster on the loopback interface, for `encode --engine ray`

It may import anything in orchestrion; no other module imports it.
"""
