"""markov: the game-music composer, Markov chains over melodic and chord events, streamed measure by measure.

    events      a score <-> two melodic lines (tone, duration) and a chord progression, on a 12-per-quarter grid
    counts      the sparse transition counts: vectorised counting, merge, save and load (safetensors)
    dataset     `orchestrion encode events`: MIDI files and ABC tunes (through abc2midi) -> events.jsonl
    training    `orchestrion train markov`: counts shard by shard, resumable
    harmony     chord symbols, their chain, progressions planned in phrases with cadences
    lines       a chain's sampling tables, and one melodic voice drawn under the composer's constraints
    voicing     chord voices over distinct chord tones in their own registers, lively textures, bass patterns
    arrange     the styles, and one piece made measure by measure, every voice in turn
    composer    `MarkovComposer`: load, save, requests, `stream` and `compose`
    likelihood  held-out pieces under the counts (Witten-Bell interpolation across orders)

No torch, no model file beyond counts.safetensors + config.json. What it may import: the core, the
Composer interface, requests and errors; no other system.
"""
