"""Music I/O benchmark: load MIDI and estimate the key, ours (symusic + numpy) vs music21, same files.

    .venv/bin/python benchmarks/music_io.py [--limit 100]

Both sides read the same built-in chorale MIDI files and estimate each piece's key with the
Krumhansl-Schmuckler method: ours is `music.load_midi` + `music.estimate_key` (duration-weighted
pitch-class histogram over symusic's numpy arrays); the peer is `music21.converter.parse(path)` +
`score.analyze('key')`, the usual Python way. Printed: files per second for each, the speed ratio, and
how often each side's key matches the key written in the original score (key signature and mode),
counted over the pieces whose MusicXML gives a mode.
"""

from __future__ import annotations

import argparse
import time

from orchestrion.core.corpora import corpus_files
from orchestrion.core.music import PITCH_NAMES, estimate_key, load_midi


def written_key(midi_path) -> str | None:
    """The key the original score states (a MusicXML key with a mode), or None when it names no mode."""
    from music21 import converter

    from orchestrion.core.corpora import music21_corpus_dir

    source = music21_corpus_dir() / "bach" / f"{midi_path.stem}.mxl"
    if not source.is_file():
        return None
    keys = converter.parse(str(source), forceSource=True).flatten().getElementsByClass("Key")
    if not keys:  # a bare key signature, without a mode
        return None
    return f"{PITCH_NAMES[keys[0].tonic.pitchClass]} {keys[0].mode}"


def ours(paths: list) -> tuple[float, list[str]]:
    start = time.perf_counter()
    keys = [estimate_key(load_midi(p)).name for p in paths]
    return time.perf_counter() - start, keys


def peer(paths: list) -> tuple[float, list[str]]:
    from music21 import converter

    start = time.perf_counter()
    keys = []
    for p in paths:
        key = converter.parse(str(p), forceSource=True).analyze("key")
        keys.append(f"{PITCH_NAMES[key.tonic.pitchClass]} {key.mode}")
    return time.perf_counter() - start, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="number of chorales")
    args = parser.parse_args()
    paths = corpus_files("bach-chorales")[: args.limit]
    import music21  # noqa: F401  (imported before timing, as a loaded library is what both sides use)

    ours_s, ours_keys = ours(paths)
    peer_s, peer_keys = peer(paths)
    truth = [written_key(p) for p in paths]
    rated = [i for i, k in enumerate(truth) if k is not None]
    kk_keys = [estimate_key(load_midi(p), "krumhansl-kessler").name for p in paths]
    kk_ok = sum(kk_keys[i] == truth[i] for i in rated)
    ours_ok = sum(ours_keys[i] == truth[i] for i in rated)
    peer_ok = sum(peer_keys[i] == truth[i] for i in rated)
    agree = sum(a == b for a, b in zip(ours_keys, peer_keys, strict=True))
    n = len(paths)
    print(f"{n} Bach chorales (MIDI), load + key estimate")
    print(f"  orchestrion (symusic + numpy KS): {n / ours_s:8.1f} files/s  ({ours_s:.2f} s)")
    print(f"  music21 (parse + analyze('key')): {n / peer_s:8.1f} files/s  ({peer_s:.2f} s)")
    print(f"  ratio (ours / music21): {peer_s / ours_s:.1f}x faster")
    print(
        f"  keys matching the written key: ours {ours_ok}/{len(rated)}, music21 {peer_ok}/{len(rated)}; "
        f"the two agree on {agree}/{n}"
    )
    print(f"  (ours with the Krumhansl-Kessler profiles instead of Aarden-Essen: {kk_ok}/{len(rated)})")


if __name__ == "__main__":
    main()
