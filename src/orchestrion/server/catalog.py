"""What the page shows for each model: its fields, their defaults, limits and help, the prompts it takes.

Everything a model says about itself in `Composer.options()` wins: markov lists its fields, defaults and
limits (`max_bars`, `max_voices`); a GPT model gives its encoding, context and what it learned from its data
(`data_defaults`: the usual line-up of a chorale model, the keys and meters of a folk model). Where a model
says nothing, the defaults below by kind (and GPT encoding) fill in, each checked to be a request that the
model accepts (`tests/server/test_catalog.py`), so that the page's first Generate always works.
"""

from __future__ import annotations

from orchestrion.composer import Composer

HELP = {
    "temperature": "How adventurous: below 1 keeps to the likeliest notes, above 1 takes more chances.",
    "top_p": "Draw only from the likeliest choices that together make up this share (1 = from all of them).",
    "top_k": "Draw only from the k likeliest choices (0 = no limit).",
    "repetition_penalty": "Above 1 makes a note the model just played less likely to come again.",
    "seed": "The same seed and settings make the same piece again; leave it empty for a new one.",
    "bars": "How many 4/4 measures to compose.",
    "seconds": "How many seconds of audio to compose.",
    "tempo": "Quarter notes per minute.",
    "key": "Key and mode, e.g. D minor (empty: the model chooses).",
    "candidates": "Candidate bars the harmony critic chooses from: more is better and slower.",
    "rhythm": "The tune type: it sets the meter, the tempo and the form.",
    "form": "Two repeated 8-bar strains (AABB), or free length.",
    "meter": "Time signature, e.g. 6/8 (empty: the rhythm's own).",
    "title": "The tune's title (empty: the model writes one).",
    "prompt": "A file for the model to continue.",
    "fill_bars": "Measures of the prompt to compose again, e.g. 3-4; the others are kept.",
    "keep_tracks": "Tracks of the prompt to keep as they are; the other tracks are composed anew.",
    "chord_pull": "Pull melodies towards the notes of the current chord.",
    "max_hold_bars": "The longest one melody note may be held or repeated, in measures.",
    "style": "How the chords are played.",
    "instruments": "The voices to compose, top to bottom.",
    "voices": "The voices to compose: a high or low melody, or chords, each with its instrument.",
}

# Used where a model's options() say nothing: the fields the page shows, and defaults the model accepts.
BY_KIND: dict[str, dict] = {
    "markov": {
        "fields": ["voices", "programs", "key", "tempo", "bars", "temperature", "chord_pull", "seed"],
        "defaults": {"bars": 16, "tempo": 120.0, "key": "C major"},
        "prompts": [],
    },
    "gpt:mmm": {
        "fields": ["bars", "key", "tempo", "instruments", "temperature", "top_p", "top_k", "candidates", "seed",
                   "prompt", "fill_bars", "keep_tracks"],
        "defaults": {"bars": 8, "tempo": 100.0},
        "prompts": ["mid"],
    },
    "gpt:abc": {
        "fields": ["rhythm", "key", "meter", "form", "title", "tempo", "programs", "temperature", "top_p", "top_k",
                   "seed", "prompt"],
        "defaults": {},
        "prompts": ["abc"],
        "choices": {
            "rhythm": ["reel", "jig", "hornpipe", "polka", "slip jig", "waltz", "march", "strathspey", "slide"],
            "form": ["strains", "free"],
        },
    },
    "gpt": {
        "fields": ["bars", "temperature", "top_p", "top_k", "seed", "prompt"],
        "defaults": {"bars": 8},
        "prompts": ["mid", "abc"],
    },
    "sashimi": {"fields": ["seconds", "temperature", "top_p", "seed", "prompt"], "defaults": {}, "prompts": ["wav"]},
}  # fmt: skip

KEYS = [f"{tonic} {mode}" for mode in ("major", "minor") for tonic in
        ("C", "G", "D", "A", "E", "B", "F#", "F", "Bb", "Eb", "Ab", "Db")]  # fmt: skip


def kind_of(composer: Composer, options: dict) -> str:
    encoding = options.get("encoding")
    return f"{composer.kind}:{encoding}" if f"{composer.kind}:{encoding}" in BY_KIND else composer.kind


def describe(ref: str, composer: Composer, description: str, request_limits: dict) -> dict:
    """The page's view of one model (GET /api/models)."""
    options = composer.options()
    base = BY_KIND.get(kind_of(composer, options), {"fields": ["seed"], "defaults": {}, "prompts": []})
    fields = [f for f in (options.get("fields") or base["fields"]) if f != "num_samples"]
    defaults = {**base["defaults"], **(options.get("defaults") or {})}
    data = options.get("data_defaults") or {}
    if "seconds" in fields and "seconds" not in defaults and options.get("default_seconds"):
        defaults["seconds"] = options["default_seconds"]
    if data.get("default_instruments") and "instruments" not in defaults:
        defaults["instruments"] = list(data["default_instruments"])
    limits = {name: dict(request_limits.get(name, {})) for name in fields}
    for name, key in (("bars", "max_bars"), ("voices", "max_voices"), ("instruments", "max_voices")):
        if name in limits and options.get(key):
            limits[name]["max"] = options[key]
    choices = dict(base.get("choices", {}))
    if "key" in fields:
        learned = [k for k, _ in (data.get("default_headers") or {}).get("key", [])]
        choices["key"] = learned + [k for k in KEYS if k not in learned]
    if "meter" in fields:
        choices["meter"] = [m for m, _ in (data.get("default_headers") or {}).get("meter", [])]
    if options.get("styles"):
        choices["style"] = list(options["styles"])
    return {
        "ref": ref,
        "kind": composer.kind,
        "description": description,
        "fields": fields,
        "defaults": defaults,
        "limits": {k: v for k, v in limits.items() if v},
        "choices": choices,
        "help": {f: HELP[f] for f in fields if f in HELP},
        "prompts": list(options.get("prompts") or base["prompts"]),
        "output": options.get("output", "score"),
        "formats": _formats(options, base),
        "options": options,
    }


def _formats(options: dict, base: dict) -> list[str]:
    """What a finished piece of this model can be downloaded as."""
    if options.get("output") == "audio":
        return ["wav", "json"]
    formats = ["mid", "wav", "svg", "json"]
    return ["abc", *formats] if "abc" in base.get("prompts", []) and options.get("encoding") == "abc" else formats


def prompt_kinds(composer: Composer) -> list[str]:
    options = composer.options()
    base = BY_KIND.get(kind_of(composer, options), {"prompts": []})
    return list(options.get("prompts") or base["prompts"])
