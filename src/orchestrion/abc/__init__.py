"""abc: folk tunes as cleaned, spaceless ABC text for the GPT composer (the GPT-2 folk system).

    text        tunes and their header fields, the named cleaning steps, spaceless ABC, newline escaping
    dataset     `orchestrion encode abc`: clean, compile with abc2midi, deduplicate, split, BPE, shards
    grammar     the header-forcing processor, the body syntax automaton, the plan from a request
    sampler     `sample_abc`: tunes sampled under the grammar, each compiled with abc2midi and retried
    encoding    `ABCEncoding`, how ABC plugs into `orchestrion.gpt` (gpt/encoding.py)

Files are split into tunes by `orchestrion.core.abcfile`, compiled by `orchestrion.core.abcmidi`. What it
may import: the core, the Composer interface, requests and errors, and `orchestrion.gpt` (its decoding
loop); no other system. The torch modules (grammar, sampler) are imported lazily, to compose.
"""
