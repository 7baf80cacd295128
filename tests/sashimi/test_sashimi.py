"""SaShiMi: the recurrent sampler equals the convolutional forward pass; training, generation, checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from orchestrion.errors import InvalidRequest
from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest
from orchestrion.sashimi.composer import SashimiComposer
from orchestrion.sashimi.model import Sashimi, SashimiConfig
from orchestrion.sashimi.sampler import Sampler, choose
from orchestrion.sashimi.training import SashimiTraining, evaluate, train_sashimi

TINY = {"d_model": 16, "n_layers": 1, "d_state": 8}


def _model(seed: int = 0, **overrides: object) -> Sashimi:
    torch.manual_seed(seed)
    model = Sashimi(SashimiConfig(**{**TINY, **overrides})).eval()
    for module in model.modules():  # non-trivial norms, so that folding them into the sampler is tested
        if isinstance(module, torch.nn.LayerNorm):
            torch.nn.init.normal_(module.weight, 1.0, 0.2)
            torch.nn.init.normal_(module.bias, 0.0, 0.2)
    return model


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n_layers": 2, "d_model": 64, "d_state": 64},
        {"pool": (4,)},
        {"amplitude_input": True},
        {"amplitude_output": True},
        {"amplitude_input": True, "amplitude_output": True, "pool": (4,)},
    ],
    ids=["tiny", "2-layer-d64", "one-pool", "amplitude-input", "amplitude-output", "amplitude-both-one-pool"],
)
def test_recurrent_steps_equal_the_forward_pass(overrides: dict) -> None:
    model = _model(**overrides)
    tokens = torch.randint(0, 256, (2, 192), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens).numpy()  # (B, L, C)
    sampler = Sampler(model, batch=2)
    steps = np.stack([sampler.step(tokens[:, t].numpy()).copy() for t in range(192)], 1)
    assert np.linalg.norm(steps - full) / np.linalg.norm(full) < 1e-4
    fed = Sampler(model, batch=2).feed(tokens[:, :100].numpy())
    assert np.linalg.norm(fed - full[:, 99]) / np.linalg.norm(full[:, 99]) < 1e-4


def test_forward_is_causal() -> None:
    model = _model()
    a = torch.randint(0, 256, (1, 128), generator=torch.Generator().manual_seed(2))
    b = a.clone()
    b[:, 77:] = 3
    with torch.no_grad():
        assert torch.allclose(model(a)[:, :77], model(b)[:, :77], atol=1e-5)


def test_choose_respects_temperature_and_top_p() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))
    rng = np.random.default_rng(0)
    picks = [int(choose(logits, 1.0, 0.6, rng.gumbel(size=(1, 4)).astype(np.float32))[0]) for _ in range(300)]
    assert set(picks) == {0, 1}  # the nucleus of 0.6 holds the two most likely classes
    cold = [int(choose(logits, 0.05, 1.0, rng.gumbel(size=(1, 4)).astype(np.float32))[0]) for _ in range(100)]
    assert cold.count(0) > 95


def test_choose_respects_top_k_then_top_p() -> None:
    logits = np.log(np.array([[0.4, 0.3, 0.2, 0.1]], dtype=np.float32))
    rng = np.random.default_rng(0)

    def picks(top_k: int, top_p: float) -> set[int]:
        noise = [rng.gumbel(size=(1, 4)).astype(np.float32) for _ in range(300)]
        return {int(choose(logits, 1.0, top_p, g, top_k)[0]) for g in noise}

    assert picks(3, 1.0) == {0, 1, 2}
    assert picks(1, 1.0) == {0}
    assert picks(0, 1.0) == {0, 1, 2, 3}  # 0: off
    assert picks(2, 0.5) == {0}  # renormalised within the top 2, class 0 holds 0.4 / 0.7 = 0.57 >= 0.5 ...
    assert picks(2, 0.6) == {0, 1}  # ... but not 0.6
    assert picks(3, 0.5) == {0, 1}  # within the top 3, 0.4 / 0.9 = 0.44 < 0.5: two classes


def test_compiled_sampling_equals_choose_and_step() -> None:
    model = _model(4)
    gumbel = np.random.default_rng(5).gumbel(size=(40, 2, 256)).astype(np.float32)
    start = np.array([128, 128])
    fast = Sampler(model, batch=2)
    fast.step(start)
    out = fast.sample(40, 0.9, 0.95, gumbel, top_k=20)
    slow = Sampler(model, batch=2)
    logits = slow.step(start)
    for t in range(40):
        classes = choose(logits, 0.9, 0.95, gumbel[t], 20)
        assert np.array_equal(classes, out[:, t])
        logits = slow.step(classes)


def _composer(tmp_path: Path) -> SashimiComposer:
    directory = SashimiComposer(_model(3)).save(tmp_path / "model")
    assert json.loads((directory / "config.json").read_text())["composer"] == "sashimi"
    composer = load_composer(directory)
    assert isinstance(composer, SashimiComposer)
    return composer


def test_generate_writes_16k_audio_with_a_report(tmp_path: Path) -> None:
    composer = _composer(tmp_path)
    request = ComposeRequest(model=str(tmp_path / "model"), seconds=0.3, seed=7)
    piece = composer.compose(request)
    paths = piece.save(tmp_path / "a.wav")
    info = sf.info(str(paths[0]))
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == 4800
    sidecar = json.loads(paths[1].read_text())
    report = sidecar["report"]
    assert {"label", "reason", "flatness", "harmonicity", "ok"} <= set(report)
    assert report["ok"] == (report["label"] == "tonal")  # an untrained model makes noise, and says so
    again = composer.compose(request)
    assert np.array_equal(piece.audio, again.audio)  # same seed, same audio
    other = composer.compose(request.model_copy(update={"seed": 8}))
    assert not np.array_equal(piece.audio, other.audio)


def test_a_piece_built_from_the_stream_carries_the_verdict(tmp_path: Path) -> None:
    """The web app builds its piece from the streamed chunks (`Composer.piece`): the verdict comes with it,
    and noise is never valid."""
    composer = _composer(tmp_path)
    request = composer.validate(ComposeRequest(model="x", seconds=0.5, seed=5))
    chunks = list(composer.stream(request))
    assert chunks[-1].to_json()["type"] == "report"  # what the websocket sends last
    piece = composer.piece(request, chunks)
    assert piece.report == composer.compose(request).report
    assert piece.report["label"] == "noise" and piece.report["ok"] is False  # an untrained model's hiss
    assert piece.report["flatness"] > 0.05 and piece.report["prompt_seconds"] == 0.0
    assert composer.check(piece) == {"valid": False, "why": piece.report["reason"]}


def test_batch_and_stream(tmp_path: Path) -> None:
    composer = _composer(tmp_path)
    request = ComposeRequest(model="x", seconds=0.5, seed=1, num_samples=3, top_p=0.9, temperature=0.8)
    pieces = composer.compose_batch(request)
    assert len(pieces) == 3 and all(len(p.audio) == 8000 for p in pieces)
    assert not np.array_equal(pieces[0].audio, pieces[1].audio)
    chunks = list(composer.stream(request))
    blocks, reports = chunks[:-3], [c.report for c in chunks[-3:]]
    assert [b.index for b in blocks] == list(range(6)) and blocks[0].sample_rate == 16000
    assert np.array_equal(np.concatenate([b.samples for b in blocks[0::3]]), pieces[0].audio)
    assert [r["sample"] for r in reports] == [0, 1, 2] and [p.report for p in pieces] == reports


def test_top_k_shapes_the_audio_and_is_recorded(tmp_path: Path) -> None:
    composer = _composer(tmp_path)
    plain = composer.compose(ComposeRequest(model="x", seconds=0.2, seed=3))
    narrow = composer.compose(ComposeRequest(model="x", seconds=0.2, seed=3, top_k=2))
    assert not np.array_equal(plain.audio, narrow.audio)
    assert narrow.provenance["request"]["top_k"] == 2
    assert len(np.unique(narrow.audio)) < len(np.unique(plain.audio))
    with pytest.raises(InvalidRequest, match="top_k"):
        composer.validate(ComposeRequest(model="x", top_k=300))


@pytest.mark.parametrize(
    ("field", "value"),
    [("repetition_penalty", 1.2), ("bars", 4), ("key", "D minor"), ("voices", [0, 1]), ("max_tokens", 10)],
)
def test_options_a_sashimi_model_lacks_are_refused_by_name(tmp_path: Path, field: str, value: object) -> None:
    composer = _composer(tmp_path)
    with pytest.raises(InvalidRequest, match=field):
        composer.validate(ComposeRequest(model="x", **{field: value}))


def test_the_model_s_sampling_defaults_apply_and_are_recorded(tmp_path: Path) -> None:
    directory = SashimiComposer(_model(3), {"sampling": {"temperature": 0.9, "top_k": 40}}).save(tmp_path / "m")
    composer = load_composer(directory)
    request = composer.validate(ComposeRequest(model=str(directory), seed=1))
    assert (request.temperature, request.top_k, request.top_p) == (0.9, 40, 1.0)
    mine = composer.validate(ComposeRequest(model=str(directory), seed=1, temperature=1.0, top_k=0))
    assert (mine.temperature, mine.top_k) == (1.0, 0)  # what the request says wins
    assert composer.options()["defaults"]["top_k"] == 40


def test_prompt_continuation_any_rate(tmp_path: Path) -> None:
    composer = _composer(tmp_path)
    t = np.arange(11025) / 22050
    sf.write(tmp_path / "prompt.wav", 0.4 * np.sin(2 * np.pi * 220 * t), 22050)  # 0.5 s at 22.05 kHz
    piece = composer.compose(ComposeRequest(model="x", seconds=0.25, seed=2, prompt=str(tmp_path / "prompt.wav")))
    assert len(piece.audio) == 8000 + 4000
    assert piece.report["prompt_seconds"] == 0.5
    assert np.abs(piece.audio[:8000]).max() > 0.3  # the prompt comes first
    assert -1.0 <= piece.report["continuation_chroma"] <= 1.0  # does it keep the prompt's notes?
    with pytest.raises(InvalidRequest, match="prompt"):
        composer.validate(ComposeRequest(model="x", prompt=str(tmp_path / "missing.wav")))


def test_tiny_training_run(tmp_path: Path) -> None:
    from orchestrion.sashimi.dataset import encode_audio

    folder = tmp_path / "audio"
    folder.mkdir()
    rate = 16000
    for i in range(4):
        x = np.arange(rate) / rate
        sf.write(folder / f"t{i}.wav", 0.5 * np.sin(2 * np.pi * (110 + 30 * i) * x), rate)
    encode_audio([str(folder)], tmp_path / "data", chunk_seconds=1.0)
    settings = SashimiTraining(
        layers=1, seq_len=256, eval_windows=2, model={"d_model": 16, "amplitude_input": True}, sample_seconds=0.2
    )
    settings.train.update(
        steps=12, batch_size=2, lr=5e-3, warmup_steps=2, eval_every=12, eval_batches=1, checkpoint_every=6, log_every=3
    )
    card = train_sashimi(tmp_path / "data", tmp_path / "model", settings)
    assert set(card["metrics"]) == {"validation", "test"}
    assert set(card["metrics"]["test"]) == {"loss", "bpb", "accuracy", "accuracy@3", "accuracy@5", "accuracy@10"}
    records = [json.loads(line) for line in (tmp_path / "model" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < losses[0] < 6.0  # it learns (a pure tone is easy)
    assert (tmp_path / "model" / "loss_curve.png").is_file() and (tmp_path / "model" / "learning_curve.png").is_file()
    heard = [r for r in records if "sample_flatness" in r]  # the second learning curve: what samples sound like
    assert heard and {"sample_harmonicity", "sample_tonal", "sample_labels"} <= set(heard[-1])
    composer = load_composer(tmp_path / "model")
    assert composer.config.d_model == 16 and composer.config.amplitude_input
    metrics = evaluate(composer.model, tmp_path / "data", "test", seq_len=256, windows=2)
    assert metrics["bpb"] == pytest.approx(metrics["loss"] / np.log(2))
    assert metrics["accuracy"] <= metrics["accuracy@3"] <= metrics["accuracy@5"] <= metrics["accuracy@10"]


def test_unknown_model_settings_are_refused(tmp_path: Path) -> None:
    from orchestrion.errors import BadInput

    with pytest.raises(BadInput, match="d_modle"):
        train_sashimi(tmp_path, tmp_path / "m", SashimiTraining(model={"d_modle": 32}))


def test_the_melody_corpus_plays_the_soprano_alone(tmp_path: Path) -> None:
    from orchestrion.core.audio_analysis import classify
    from orchestrion.core.music import save_midi, score_from_notes
    from orchestrion.sashimi.dataset import _render_piano

    soprano = {"pitch": [72, 74, 76, 77], "start": [0, 480, 960, 1440], "duration": [480] * 4}
    bass = {"pitch": [36, 43, 40, 41], "start": [0, 480, 960, 1440], "duration": [480] * 4}
    midi = save_midi(score_from_notes([soprano, bass], tpq=480, tempo_qpm=120), tmp_path / "two.mid")
    for voices in ("all", "soprano"):
        assert _render_piano((str(midi), str(tmp_path / f"{voices}.wav")), (16000, voices)) is None
    low = {}
    for voices in ("all", "soprano"):
        x, rate = sf.read(tmp_path / f"{voices}.wav", dtype="float32")
        spectrum = np.abs(np.fft.rfft(x))
        freqs = np.fft.rfftfreq(len(x), 1 / rate)
        low[voices] = spectrum[(freqs > 50) & (freqs < 120)].sum() / spectrum.sum()  # the bass: C2 to B2
        assert classify(x, rate).label == "tonal"
    assert low["soprano"] < 0.2 * low["all"]


def test_encode_audio_on_ray_is_byte_identical(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    import ray

    from orchestrion.sashimi.dataset import encode_audio
    from orchestrion.testing.local_ray import offline_ray_env

    folder = tmp_path / "audio"
    folder.mkdir()
    rate = 16000
    for i in range(4):
        sf.write(folder / f"t{i}.wav", 0.5 * np.sin(2 * np.pi * (110 + 30 * i) * np.arange(rate) / rate), rate)
    (folder / "broken.wav").write_bytes(b"RIFF, but nothing else")  # reported in dataset.json either way
    local = encode_audio([str(folder)], tmp_path / "local", chunk_seconds=0.5, workers=2)
    # The Ray processes ray.init starts get these. One HOME for every Ray of the session: Ray (2.60) makes its
    # auth token there when it first starts, and keeps token auth on for the rest of this process.
    for key, value in offline_ray_env(tmp_path_factory.getbasetemp() / "ray-home").items():
        monkeypatch.setenv(key, value)
    try:
        on_ray = encode_audio([str(folder)], tmp_path / "ray", chunk_seconds=0.5, workers=2, engine="ray")
    finally:
        ray.shutdown()
    assert on_ray == local and list(local["failed"]) == [str(folder / "broken.wav")]

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(tmp_path / "ray") == files(tmp_path / "local")


def test_the_gpu_preset_trains_under_bf16_autocast(tmp_path: Path) -> None:
    """`--preset piano-gpu` asks for CUDA and bf16; its code path (bf16 autocast) runs here on the CPU, tiny."""
    from orchestrion.errors import BadInput
    from orchestrion.sashimi.dataset import encode_audio
    from orchestrion.sashimi.training import preset

    settings = preset("piano-gpu")
    assert (settings.train["device"], settings.train["precision"]) == ("cuda", "bf16")
    assert settings.layers == 2 and settings.seq_len % 16 == 0
    folder = tmp_path / "audio"
    folder.mkdir()
    x = np.arange(16000) / 16000
    for i in range(3):
        sf.write(folder / f"t{i}.wav", 0.5 * np.sin(2 * np.pi * (110 + 40 * i) * x), 16000)
    encode_audio([str(folder)], tmp_path / "data", chunk_seconds=1.0)
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="CUDA GPU"):  # said before anything is written
            train_sashimi(tmp_path / "data", tmp_path / "refused", preset("piano-gpu"))
        assert not (tmp_path / "refused").exists()
    settings.seq_len, settings.eval_windows, settings.sample_count = 256, 2, 0
    settings.model["d_model"] = 16
    settings.train.update(
        device="cpu", steps=6, batch_size=2, warmup_steps=1, eval_every=6, eval_batches=1, checkpoint_every=3
    )
    card = train_sashimi(tmp_path / "data", tmp_path / "model", settings)
    assert np.isfinite(card["metrics"]["test"]["bpb"]) and card["metrics"]["test"]["bpb"] < 8.0
    saved = json.loads((tmp_path / "model" / "sashimi_training.json").read_text())
    assert saved["train"]["precision"] == "bf16"  # what --resume reads back
    composer = load_composer(tmp_path / "model")
    assert composer.model.embedding.weight.dtype == torch.float32  # weights stay fp32; autocast only computes
