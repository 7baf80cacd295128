"""The shared core: what every system builds on, and nothing that knows a particular model.

    music, corpora, abcfile      scores (symusic), the built-in corpora from music21, ABC files as found
    folder_export                `orchestrion corpus export`: a folder of the user's files as a clean corpus
    files, shards, engine        atomic writes, token datasets on disk, the parallel resumable map (local or Ray)
    sampling, training           the generic logits processors, the shared torch training loop
    tools, abcmidi, audio        external programs, the abcmidi bridge, audio loading
    render, novelty              WAV / piano roll / score rendering, the plagiarism index of generated tunes

What it may import: `orchestrion.errors` (and `orchestrion.requests` for type names) and itself; never a
system package (gpt, mmm, abc, markov, sashimi) or anything built on them (registry, composer, evaluation,
server, cli). torch lives only in `sampling` and `training`, which are imported lazily.
"""
