"""mmm: multi-track MIDI as mmmtrack tokens for the GPT composer (the MMM system).

    vocabulary  the token format, its grammar and vocabulary, the encoder's options
    codec       MIDI <-> tokens (encode vectorised over symusic's arrays), decode with repairs in `decode`
    dataset     `orchestrion encode mmm`: parallel, resumable, deterministic MIDI -> token dataset
    grammar     the grammar as a logits mask, and the plan a request and its prompt make
    sampler     `sample_mmm`, the batch sampling loop under the grammar
    encoding    `MMMEncoding`, how mmm plugs into `orchestrion.gpt` (gpt/encoding.py)

What it may import: the core, the Composer interface, requests and errors, and `orchestrion.gpt` (its
decoding loop); no other system. The torch modules (grammar, sampler) are imported lazily, to compose.
"""
