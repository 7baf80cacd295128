"""The GPT composer: a Hugging Face GPT-2 over a text form of music, and everything that trains and samples it.

    model       the GPT-2 shape, presets, model building and vocabulary merging
    training    `orchestrion train gpt` (fine-tuning included) and the export with its model card
    decoding    the KV-cached sampling loop that runs a processor chain
    composer    `GPTComposer`, which streams music through the model's encoding
    encoding    the `Encoding` protocol a text form of music implements to plug in here
    likelihood  loss, perplexity and bits per token / character / byte on a token dataset

This package knows transformers and nothing about music: mmm and abc plug in through `gpt/encoding.py`
(looked up by name in `orchestrion.registry.ENCODINGS`), never the other way round. It may import the
core, the Composer interface, requests, errors and the registry; not mmm or abc.
"""
