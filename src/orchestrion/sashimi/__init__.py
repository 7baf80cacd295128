"""sashimi: raw audio with SaShiMi, a multi-scale U-Net of S4 layers over 16 kHz 8-bit mu-law samples.

    mulaw       float waveforms <-> 8-bit classes, mu-law or linear
    dataset     `orchestrion encode audio`: any audio -> 16 kHz 8-bit shards, and the built-in piano corpus
    s4          the S4D layer: FFT convolution for training, a recurrent step for sampling
    model       the network and its config
    sampler     the network in recurrent mode, one sample at a time (numba loop nests)
    training    `orchestrion train sashimi` and the likelihood table
    composer    `SashimiComposer`: audio streamed in 0.25 s blocks, unconditional or continuing a prompt

What it may import: the core, the Composer interface, requests and errors; no other system. The torch
and numba modules (s4, model, sampler, training, composer) are imported only when a model is loaded.
"""
