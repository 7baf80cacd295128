"""abc: folk tunes as cleaned, spaceless ABC text for the GPT composer (the GPT-2 folk system).

    text        tunes and their header fields, the named cleaning steps, spaceless ABC, newline escaping
    dataset     `orchestrion encode abc`: clean, compile with abc2midi, deduplicate, split, BPE, shards
    ticks       durations as integer ticks, the fast NamedTuple replace the automata run on
    meter       bar lengths under L: and M:, one character at a time (also the quality measures' parser)
    syntax      the body syntax automaton: the subset of ABC abc2midi reads without complaint
    body        the body grammar: syntax, full bars, two strains, the tonic at the end; token steps cached
    rhythms     tune types: their meters, tempo and form
    titles      the title vocabulary and the per-token check of a title of real words
    grammar     the header-forcing processor (and the body grammar at work), the plan from a request
    sampler     `sample_abc`: tunes sampled under the grammar, each compiled with abc2midi and retried
    encoding    `ABCEncoding`, how ABC plugs into `orchestrion.gpt` (gpt/encoding.py)

Files are split into tunes by `orchestrion.core.abcfile`, compiled by `orchestrion.core.abcmidi`. What it
may import: the core, the Composer interface, requests and errors, and `orchestrion.gpt` (its decoding
loop); no other system. The torch modules (grammar, sampler) are imported lazily, to compose.
"""
