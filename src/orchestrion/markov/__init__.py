"""markov: the game-music composer, Markov chains over melodic and chord events, streamed measure by measure.

    events      a score <-> two melodic lines (tone, duration) and a chord progression, on a 12-per-quarter grid
    counts      the sparse transition counts: vectorised counting, merge, save and load (safetensors)
    dataset     `orchestrion encode events`: files -> events.jsonl, bad files reported
    composer    `MarkovComposer`: training, and 1-16 voices composed one `Measure` at a time
    likelihood  held-out pieces under the counts (Witten-Bell interpolation across orders)

No torch, no model file beyond counts.safetensors + config.json. What it may import: the core, the
Composer interface, requests and errors; no other system.
"""
