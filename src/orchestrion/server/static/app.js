// orchestrion web client: pick a model, set its options, stream a piece over /stream, draw it as it
// arrives and play it with Web Audio while the rest is still being composed. No build step, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#e8505b", "#3d8bfd", "#f4a62a", "#2bb673", "#a366f0", "#14b8c4", "#f0679e", "#8fb339",
  "#ff8a4c", "#5b6ee1", "#c9a227", "#3cbfa0", "#d65db1", "#7e8ce0", "#b5773a", "#60a5fa"];
const KINDS = ["high", "low", "chords"];  // markov voice kinds 0, 1, 2: high melody, low melody, chords
const PROGRAMS = [[0, "Piano"], [6, "Harpsichord"], [11, "Vibraphone"], [19, "Church organ"], [24, "Nylon guitar"],
  [32, "Acoustic bass"], [33, "Finger bass"], [40, "Violin"], [41, "Viola"], [42, "Cello"], [46, "Harp"],
  [48, "Strings"], [52, "Choir"], [56, "Trumpet"], [57, "Trombone"], [58, "Tuba"], [60, "French horn"], [68, "Oboe"],
  [70, "Bassoon"], [71, "Clarinet"], [73, "Flute"], [80, "Square lead"], [88, "Warm pad"]];
const DEFAULT_PROGRAM = [73, 42, 0];
const LEAD_SECONDS = 8;
const TONICS = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];

// What tests and the curious can read: counts of what arrived and whether sound is playing.
const state = window.orchestrion = {
  models: [], model: null, measures: 0, chunks: 0, playbackStarted: false, audioState: "none",
  composing: false, pieces: [], current: null, promptId: null,
};

// ------------------------------------------------------------------------------------------ theme
(function theme() {
  const saved = localStorage.getItem("orchestrion-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  $("theme").addEventListener("click", () => {
    const dark = getComputedStyle(document.documentElement).colorScheme.includes("dark");
    const next = dark ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("orchestrion-theme", next);
    roll.redraw();
  });
})();

// ------------------------------------------------------------------------------------- piano roll
const roll = {
  notes: [], voices: [], quarters: 32, lo: 48, hi: 84,
  canvas: $("roll"), head: $("playhead"),
  reset(quarters) {
    this.notes = []; this.voices = []; this.quarters = Math.max(4, quarters); this.lo = 48; this.hi = 84;
    this.canvas.dataset.measures = "0";
    this.redraw();
  },
  size(c) {
    const r = c.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(r.width * dpr) || c.height !== Math.round(r.height * dpr)) {
      c.width = Math.round(r.width * dpr); c.height = Math.round(r.height * dpr);
    }
    return [c.width, c.height, dpr];
  },
  add(measure) {
    this.voices = measure.voices;
    let grew = false;
    for (const n of measure.notes) {
      if (n.pitch < this.lo) { this.lo = Math.max(0, n.pitch - 2); grew = true; }
      if (n.pitch > this.hi) { this.hi = Math.min(127, n.pitch + 2); grew = true; }
      this.notes.push(n);
    }
    const end = (measure.index + 1) * measure.beats;
    if (end > this.quarters) { this.quarters = Math.ceil(end / 16) * 16; grew = true; }
    if (grew) this.redraw(); else this.draw(measure.notes);
    this.canvas.dataset.measures = String(Number(this.canvas.dataset.measures) + 1);
  },
  css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); },
  redraw() {
    const [w, h, dpr] = this.size(this.canvas);
    const g = this.canvas.getContext("2d");
    g.fillStyle = this.css("--roll"); g.fillRect(0, 0, w, h);
    const rows = this.hi - this.lo + 1, rh = h / rows, qx = w / this.quarters;
    g.fillStyle = this.css("--grid");
    for (let p = this.lo; p <= this.hi; p++) if ([1, 3, 6, 8, 10].includes(p % 12)) g.fillRect(0, h - (p - this.lo + 1) * rh, w, rh);
    for (let q = 0; q <= this.quarters; q++) {
      g.fillStyle = q % 4 === 0 ? this.css("--bar") : this.css("--grid");
      g.fillRect(Math.round(q * qx), 0, q % 4 === 0 ? dpr : Math.max(1, dpr / 2), h);
    }
    g.fillStyle = this.css("--muted"); g.font = `${10 * dpr}px system-ui`;
    for (let p = Math.ceil(this.lo / 12) * 12; p <= this.hi; p += 12) g.fillText(`C${p / 12 - 1}`, 3 * dpr, h - (p - this.lo) * rh - 2 * dpr);
    this.draw(this.notes);
    this.legend();
  },
  draw(notes) {
    const [w, h, dpr] = this.size(this.canvas);
    const g = this.canvas.getContext("2d");
    const rows = this.hi - this.lo + 1, rh = h / rows, qx = w / this.quarters;
    for (const n of notes) {
      g.fillStyle = PALETTE[n.voice % PALETTE.length];
      g.globalAlpha = 0.55 + 0.45 * Math.min(1, (n.velocity || 80) / 110);
      const x = n.start * qx, y = h - (n.pitch - this.lo + 1) * rh;
      g.fillRect(x + dpr / 2, y + 0.5, Math.max(2 * dpr, n.duration * qx - dpr), Math.max(2, rh - 1));
    }
    g.globalAlpha = 1;
  },
  legend() {
    $("legend").innerHTML = this.voices.map((v, i) => {
      const name = v.name || (v.kind != null ? `${KINDS[v.kind] || v.kind} ${i + 1}` : `voice ${i + 1}`);
      return `<span><i style="background:${PALETTE[i % PALETTE.length]}"></i>${escapeHtml(name)} · ${programName(v.program, v.is_drum)}</span>`;
    }).join("");
  },
  playhead(quarter) {
    const [w, h, dpr] = this.size(this.head);
    const g = this.head.getContext("2d");
    g.clearRect(0, 0, w, h);
    if (quarter == null || quarter < 0 || quarter > this.quarters) return;
    g.fillStyle = this.css("--accent");
    g.fillRect(Math.round(quarter * w / this.quarters), 0, 2 * dpr, h);
  },
};
window.addEventListener("resize", () => roll.redraw());

// ------------------------------------------------------------------------------------------ audio
// A small synth: one oscillator (+ filter and envelope) per note, a timbre per General MIDI family.
const player = {
  ctx: null, master: null, t0: null, tempo: 120, sources: [], audioNext: 0,
  ensure() {
    if (!this.ctx) {
      const AC = window.AudioContext || window.webkitAudioContext;
      this.ctx = new AC();
      this.master = this.ctx.createDynamicsCompressor();
      const gain = this.ctx.createGain(); gain.gain.value = 0.8;
      this.master.connect(gain).connect(this.ctx.destination);
      this.ctx.onstatechange = () => { state.audioState = this.ctx.state; };
    }
    if (this.ctx.state !== "running") this.ctx.resume();
    state.audioState = this.ctx.state;
    return this.ctx;
  },
  stop() {
    for (const s of this.sources) { try { s.stop(); } catch (e) { /* already ended */ } }
    this.sources = []; this.t0 = null; this.audioNext = 0;
  },
  begin(tempo) { this.stop(); this.tempo = tempo; },
  timbre(program, isDrum) {
    if (isDrum) return { type: "square", attack: 0.001, decay: 0.08, sustain: 0, cutoff: 3000, gain: 0.12 };
    const family = Math.floor(program / 8);
    const table = [
      { type: "triangle", attack: 0.005, decay: 0.9, sustain: 0.15, cutoff: 4000, gain: 0.22 },   // piano
      { type: "sine", attack: 0.002, decay: 0.6, sustain: 0.1, cutoff: 6000, gain: 0.2 },         // chromatic perc.
      { type: "square", attack: 0.03, decay: 0.1, sustain: 0.8, cutoff: 1800, gain: 0.09 },       // organ
      { type: "triangle", attack: 0.003, decay: 0.5, sustain: 0.1, cutoff: 3000, gain: 0.22 },    // guitar
      { type: "sawtooth", attack: 0.01, decay: 0.3, sustain: 0.6, cutoff: 700, gain: 0.2 },       // bass
      { type: "sawtooth", attack: 0.08, decay: 0.2, sustain: 0.8, cutoff: 2200, gain: 0.08 },     // strings
      { type: "sawtooth", attack: 0.1, decay: 0.2, sustain: 0.8, cutoff: 1800, gain: 0.08 },      // ensemble
      { type: "sawtooth", attack: 0.03, decay: 0.2, sustain: 0.7, cutoff: 2500, gain: 0.09 },     // brass
      { type: "square", attack: 0.03, decay: 0.2, sustain: 0.7, cutoff: 2200, gain: 0.08 },       // reed
      { type: "sine", attack: 0.04, decay: 0.2, sustain: 0.8, cutoff: 5000, gain: 0.2 },          // pipe
    ];
    return table[family] || { type: "triangle", attack: 0.02, decay: 0.3, sustain: 0.6, cutoff: 3000, gain: 0.12 };
  },
  measure(m) {
    const ctx = this.ensure();
    const spq = 60 / (m.tempo || this.tempo);
    const measureStart = m.index * m.beats * spq;
    // Start with the first measure; if composing falls behind playback, wait rather than play late.
    if (this.t0 === null) this.t0 = ctx.currentTime + 0.12 - measureStart;
    if (this.t0 + measureStart < ctx.currentTime + 0.05) this.t0 = ctx.currentTime + 0.1 - measureStart;
    for (const n of m.notes) this.note(n, m.voices[n.voice] || {}, this.t0 + n.start * spq, n.duration * spq);
    this.markPlaying();
  },
  note(n, voice, when, dur) {
    const ctx = this.ctx, t = this.timbre(voice.program || 0, voice.is_drum);
    const osc = ctx.createOscillator(), env = ctx.createGain(), lp = ctx.createBiquadFilter();
    osc.type = t.type;
    osc.frequency.value = 440 * Math.pow(2, (n.pitch - 69) / 12);
    lp.type = "lowpass"; lp.frequency.value = t.cutoff;
    const peak = t.gain * ((n.velocity || 80) / 100), end = when + Math.max(0.05, dur);
    env.gain.setValueAtTime(0, when);
    env.gain.linearRampToValueAtTime(peak, when + t.attack);
    env.gain.setTargetAtTime(peak * t.sustain, when + t.attack, t.decay / 3);
    env.gain.setTargetAtTime(0, end, 0.06);
    osc.connect(lp).connect(env).connect(this.master);
    osc.start(when); osc.stop(end + 0.4);
    this.sources.push(osc);
    osc.onended = () => { const i = this.sources.indexOf(osc); if (i >= 0) this.sources.splice(i, 1); };
  },
  audio(block) {
    const ctx = this.ensure();
    const n = block.samples.length;
    const buf = ctx.createBuffer(1, n, block.sample_rate), ch = buf.getChannelData(0);
    for (let i = 0; i < n; i++) ch[i] = block.samples[i] / 32768;
    const src = ctx.createBufferSource(); src.buffer = buf; src.connect(this.master);
    if (this.t0 === null) this.t0 = ctx.currentTime + 0.15;
    const when = Math.max(this.t0 + block.sample / block.sample_rate, ctx.currentTime + 0.02);
    this.t0 = when - block.sample / block.sample_rate;
    src.start(when); this.sources.push(src);
    this.markPlaying();
    return ch;
  },
  markPlaying() {
    state.playbackStarted = state.playbackStarted || this.ctx.state === "running";
    state.audioState = this.ctx.state;
    const pill = $("play-state"); pill.textContent = "playing"; pill.classList.add("live");
  },
  position() { return this.ctx && this.t0 !== null ? this.ctx.currentTime - this.t0 : null; },
};

(function animate() {
  const pos = player.position();
  roll.playhead(pos === null ? null : pos * player.tempo / 60);
  requestAnimationFrame(animate);
})();

// --------------------------------------------------------------------------------------- waveform
const wave = {
  samples: [], total: 0,
  reset(total) { this.samples = []; this.total = total; $("wave").hidden = false; this.draw(); },
  add(ch) { for (let i = 0; i < ch.length; i++) this.samples.push(ch[i]); this.draw(); },
  draw() {
    const c = $("wave"), [w, h] = roll.size(c), g = c.getContext("2d");
    g.clearRect(0, 0, w, h);
    g.fillStyle = roll.css("--accent");
    const total = Math.max(this.total, this.samples.length, 1), per = total / w;
    for (let x = 0; x < w; x++) {
      const a = Math.floor(x * per), b = Math.min(this.samples.length, Math.floor((x + 1) * per));
      if (a >= this.samples.length) break;
      let lo = 0, hi = 0;
      for (let i = a; i < b; i++) { const s = this.samples[i]; if (s < lo) lo = s; if (s > hi) hi = s; }
      g.fillRect(x, h / 2 - hi * h / 2, 1, Math.max(1, (hi - lo) * h / 2));
    }
  },
};

// ---------------------------------------------------------------------------------------- options
function programName(p, isDrum) {
  if (isDrum) return "drums";
  const hit = PROGRAMS.find(([n]) => n === p);
  return hit ? hit[1] : `program ${p}`;
}
function escapeHtml(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }
function el(html) { const t = document.createElement("template"); t.innerHTML = html.trim(); return t.content.firstChild; }
function limit(name) { return (state.limits && state.limits[name]) || {}; }

function renderFields() {
  const m = state.model, box = $("fields");
  box.innerHTML = "";
  $("model-desc").textContent = m ? m.description : "";
  if (!m) return;
  const opts = m.options || {}, defaults = opts.defaults || {}, fields = new Set(m.fields);
  const num = (name, label, value, attrs = "") =>
    el(`<label class="field">${label}<input type="number" name="${name}" value="${value}" ${attrs}></label>`);
  const range = (name, label, value, min, max, step) => {
    const f = el(`<label class="field">${label} <span class="value">${value}</span>
      <input type="range" name="${name}" min="${min}" max="${max}" step="${step}" value="${value}"></label>`);
    f.querySelector("input").addEventListener("input", (e) => { f.querySelector(".value").textContent = e.target.value; });
    return f;
  };
  if (fields.has("voices")) box.append(voicesEditor(opts, defaults));
  if (fields.has("key")) {
    const keys = opts.keys || TONICS.flatMap((t) => [`${t} major`, `${t} minor`]);
    const f = el(`<label class="field">Key and mode<select name="key"><option value="">any (the model picks)</option>
      ${keys.map((k) => `<option${k === defaults.key ? " selected" : ""}>${escapeHtml(k)}</option>`).join("")}</select></label>`);
    box.append(f);
  }
  if (fields.has("tempo")) box.append(range("tempo", "Tempo (♩/min)", defaults.tempo || 120, 40, 240, 1));
  if (fields.has("bars")) box.append(num("bars", "Measures", defaults.bars || 16, `min="1" max="${opts.max_bars || limit("bars").max || 4096}"`));
  if (fields.has("seconds")) box.append(num("seconds", "Seconds of audio", defaults.seconds || opts.default_seconds || 4, `min="0.5" step="0.5" max="${opts.max_seconds || limit("seconds").max || 600}"`));
  if (fields.has("temperature")) box.append(range("temperature", "Temperature", defaults.temperature || 1, 0.1, 2, 0.05));
  if (fields.has("top_p")) box.append(range("top_p", "Top-p", defaults.top_p || 1, 0.05, 1, 0.05));
  if (fields.has("top_k")) box.append(num("top_k", "Top-k (0 = off)", defaults.top_k || 0, `min="0"`));
  for (const [name, label] of [["title", "Title"], ["meter", "Meter (e.g. 6/8)"], ["rhythm", "Rhythm (e.g. jig)"]]) {
    if (fields.has(name)) box.append(el(`<label class="field">${label}<input type="text" name="${name}"></label>`));
  }
  if (fields.has("chord_pull")) {
    box.append(el(`<label class="field check"><input type="checkbox" name="chord_pull"${defaults.chord_pull === false ? "" : " checked"}> pull melodies toward the chord tones</label>`));
  }
  if (fields.has("seed")) {
    box.append(el(`<label class="field">Seed <span class="value hint">empty = random</span>
      <input type="number" name="seed" min="0" placeholder="random"></label>`));
  }
  if (fields.has("prompt")) box.append(promptField());
}

function voicesEditor(opts, defaults) {
  const max = opts.max_voices || 16;
  const byKind = opts.default_programs || {}, kindNames = opts.voice_kinds || {};
  // The model's own default instrument for the n-th voice of a kind, so the page sounds like the CLI.
  const programFor = (kind, voices) => {
    const list = byKind[kind] || [DEFAULT_PROGRAM[kind]];
    return list[voices.filter((v) => v.kind === kind).length % list.length];
  };
  let voices = [];
  for (const k of defaults.voices || [0, 1, 2]) voices.push({ kind: k, program: programFor(k, voices) });
  const box = el(`<div class="voices"><div class="voices-head"><span>Voices</span>
    <button type="button" class="ghost" title="add a voice">+ voice</button></div><div class="list"></div></div>`);
  const list = box.querySelector(".list");
  const draw = () => {
    list.innerHTML = "";
    voices.forEach((v, i) => {
      const row = el(`<div class="voice"><span class="swatch" style="background:${PALETTE[i % PALETTE.length]}"></span>
        <select data-voice="${i}" data-part="kind" aria-label="voice ${i + 1} kind">${KINDS.map((k, j) => `<option value="${j}" title="${kindNames[j] || k}"${j === v.kind ? " selected" : ""}>${k}</option>`).join("")}</select>
        <select data-voice="${i}" data-part="program" aria-label="voice ${i + 1} instrument">${PROGRAMS.map(([p, n]) => `<option value="${p}"${p === v.program ? " selected" : ""}>${n}</option>`).join("")}</select>
        <button type="button" class="ghost" title="remove this voice"${voices.length === 1 ? " disabled" : ""}>×</button></div>`);
      row.querySelectorAll("select").forEach((s) => s.addEventListener("change", () => { v[s.dataset.part] = Number(s.value); }));
      row.querySelector("button").addEventListener("click", () => { voices.splice(i, 1); draw(); });
      list.append(row);
    });
    box.querySelector(".voices-head button").disabled = voices.length >= max;
  };
  box.querySelector(".voices-head button").addEventListener("click", () => {
    const kind = voices.length % 3; voices.push({ kind, program: programFor(kind, voices) }); draw();
  });
  box.getVoices = () => voices;
  box.id = "voices";
  draw();
  return box;
}

function promptField() {
  const f = el(`<label class="field">Prompt (MIDI, ABC or WAV to continue)<input type="file" name="prompt-file" accept=".mid,.midi,.abc,.wav"><span class="hint" id="prompt-info"></span></label>`);
  f.querySelector("input").addEventListener("change", async (e) => {
    state.promptId = null;
    const file = e.target.files[0];
    if (!file) return;
    const body = new FormData(); body.append("file", file);
    $("prompt-info").textContent = "uploading…";
    const r = await fetch("/api/prompts", { method: "POST", body });
    const j = await r.json().catch(() => ({ message: `${file.name}: ${r.status} ${r.statusText} (too large?)` }));
    if (r.ok) { state.promptId = j.id; $("prompt-info").textContent = `uploaded ${j.name} (${j.bytes} bytes)`; }
    else { $("prompt-info").textContent = j.message; e.target.value = ""; }
  });
  return f;
}

function buildRequest() {
  const req = { model: state.model.ref };
  const form = $("controls");
  for (const input of form.querySelectorAll("#fields input[name], #fields select[name]")) {
    if (input.type === "checkbox") { req[input.name] = input.checked; continue; }
    if (input.type === "file" || input.value === "") continue;
    req[input.name] = input.type === "number" || input.type === "range" ? Number(input.value) : input.value;
  }
  const voices = $("voices");
  if (voices) { req.voices = voices.getVoices().map((v) => v.kind); req.programs = voices.getVoices().map((v) => v.program); }
  if (state.promptId) req.prompt = state.promptId;
  return req;
}

// ---------------------------------------------------------------------------------------- stream
let socket = null;
function connect() {
  return new Promise((resolve) => {
    if (socket && socket.readyState === WebSocket.OPEN) return resolve(socket);
    socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/stream`);
    socket.onopen = () => { setStatus("ready"); resolve(socket); };
    socket.onmessage = (e) => onMessage(JSON.parse(e.data));
    socket.onclose = () => { if (state.composing) finish(); setStatus("disconnected: Generate reconnects"); };
  });
}

function setStatus(text, error = false) { const s = $("status"); s.textContent = text; s.classList.toggle("error", error); }

async function generate(ev) {
  ev.preventDefault();
  if (!state.model || state.composing) return;
  document.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid"));
  player.ensure();  // inside the click, so the browser lets the page make sound
  const req = buildRequest();
  state.current = { request: req, measures: [], audio: [], text: [], model: state.model.ref, started: performance.now() };
  state.measures = 0; state.chunks = 0; state.playbackStarted = false;
  $("measure-count").textContent = "0";
  showStage(stageKind(state.model));
  roll.reset((req.bars || 16) * 4);
  player.begin(req.tempo || 120);
  clearExtras();
  const opts = state.model.options || {};
  if (state.model.kind === "sashimi" || opts.output === "audio") wave.reset((req.seconds || opts.default_seconds || 4) * (opts.sample_rate || 16000));
  state.composing = true;
  $("generate").disabled = true; $("stop").disabled = false;
  setStatus("composing…");
  if (window.matchMedia("(max-width: 820px)").matches) document.querySelector(".stage").scrollIntoView({ behavior: "smooth" });
  state.stopping = false;
  // lead: the server composes at most this many seconds ahead of what we play, so notes come as they are needed.
  (await connect()).send(JSON.stringify({ ...req, lead: LEAD_SECONDS }));
}

function onMessage(msg) {
  const cur = state.current;
  if (msg.type === "start") { if (cur) cur.request = msg.request; setStatus(`composing (seed ${msg.request.seed})…`); return; }
  if (msg.type === "error") { showError(msg); finish(); return; }
  if (!cur) return;
  if (state.stopping && msg.type !== "end") return;  // what was already on its way when Stop was pressed
  if (msg.type === "measure") {
    if (!cur.measures.length) showStage("roll");
    cur.measures.push(msg);
    roll.add(msg);
    player.measure(msg);
    state.measures += 1;
    $("measure-count").textContent = String(state.measures);
  } else if (msg.type === "audio") {
    cur.audio.push(msg);
    wave.add(player.audio(msg));
    $("measure-count").textContent = ((msg.sample + msg.samples.length) / msg.sample_rate).toFixed(2);
  } else if (msg.type === "text") {
    cur.text.push(msg);
    const pre = $("abc"); pre.hidden = false;
    if (!msg.complete) $("measure-count").textContent = String(cur.text.length);
    pre.textContent = msg.complete ? msg.text : pre.textContent + msg.text;
  } else if (msg.type === "end") {
    cur.id = msg.piece; cur.seconds = msg.seconds; cur.stopped = msg.stopped; cur.provenance = msg.provenance;
    finish();
    addPiece(cur);
    showPiece(cur);
    const unit = cur.measures.length ? "measures" : cur.audio.length ? "audio blocks" : "parts";
    setStatus(`${msg.stopped ? "stopped" : "done"}: ${msg.chunks} ${unit} · seed ${cur.request.seed}`);
    return;
  }
  state.chunks += 1;
}

// What the stage shows for a model: a piano roll for notes, a waveform for audio, the score for ABC tunes.
function stageKind(model) {
  const opts = (model && model.options) || {};
  if (model && (model.kind === "sashimi" || opts.output === "audio")) return "audio";
  if (opts.encoding === "abc") return "abc";
  return "roll";
}

function clearExtras() {
  for (const id of ["score", "abc", "audio", "wave", "downloads"]) $(id).hidden = true;
  $("score").innerHTML = ""; $("abc").textContent = ""; $("audio").removeAttribute("src");
}

function showStage(kind) {
  $("roll-wrap").hidden = kind !== "roll";
  $("legend").hidden = kind !== "roll";
  $("piece-title").textContent = { roll: "Piano roll", audio: "Waveform", abc: "Tune" }[kind];
  $("count-unit").textContent = { roll: "measures", audio: "seconds", abc: "lines" }[kind];
  if (kind === "roll") roll.redraw();
}

function finish() {
  state.composing = false;
  $("generate").disabled = false; $("stop").disabled = true;
}

function showError(msg) {
  setStatus(`${msg.field}: ${msg.message}`, true);
  const target = document.querySelector(`#fields [name="${msg.field}"]`) || (msg.field.startsWith("voices") || msg.field.startsWith("programs") ? $("voices") : null);
  if (target) target.classList.add("invalid");
}

async function showPiece(piece) {
  const link = (fmt) => `/api/pieces/${piece.id}?format=${fmt}`;
  $("dl-mid").href = link("mid"); $("dl-wav").href = link("wav"); $("dl-abc").href = link("abc"); $("dl-json").href = link("json");
  $("dl-mid").hidden = piece.measures.length === 0 && piece.text.length === 0;
  $("dl-abc").hidden = piece.text.length === 0;
  $("downloads").hidden = false;
  if (piece.text.length) {
    // ABC pieces: the score as SVG (verovio, on the server); sound from the server's rendering when no notes streamed.
    const r = await fetch(link("svg"));
    if (r.ok) { $("score").innerHTML = await r.text(); $("score").hidden = false; }
    if (!piece.measures.length) { const a = $("audio"); a.src = link("wav"); a.hidden = false; a.play().catch(() => {}); }
  }
}

function addPiece(piece) {
  state.pieces.push(piece);
  const list = $("pieces");
  if (state.pieces.length === 1) list.innerHTML = "";
  const n = state.pieces.length, req = piece.request;
  const length = piece.measures.length ? `${piece.measures.length} measures` : piece.audio.length ? `${req.seconds || ""} s of audio` : "a tune";
  const mid = piece.audio.length ? "" : `<a href="/api/pieces/${piece.id}?format=mid" download>MIDI</a>`;
  const item = el(`<li class="piece"><div class="name">#${n} · ${escapeHtml(piece.model.replace("builtin:", ""))}</div>
    <div class="meta">${length} · seed ${req.seed}${req.key ? " · " + escapeHtml(req.key) : ""}</div>
    <div class="links">${mid}<a href="/api/pieces/${piece.id}?format=wav" download>WAV</a></div></li>`);
  item.addEventListener("click", (e) => { if (e.target.tagName !== "A") replay(piece, item); });
  list.prepend(item);
  document.querySelectorAll(".pieces li").forEach((li) => li.classList.toggle("current", li === item));
}

function replay(piece, item) {
  if (state.composing) return;
  player.ensure();
  state.current = piece;
  clearExtras();
  showStage(piece.measures.length ? "roll" : piece.audio.length ? "audio" : "abc");
  if (piece.text.length) { const pre = $("abc"); pre.hidden = false; pre.textContent = piece.text.filter((t) => t.complete).map((t) => t.text).join("\n\n"); }
  roll.reset((piece.request.bars || 16) * 4);
  player.begin(piece.request.tempo || 120);
  for (const m of piece.measures) { roll.add(m); player.measure(m); }
  if (piece.audio.length) { wave.reset(0); for (const b of piece.audio) wave.add(player.audio(b)); }
  $("measure-count").textContent = String(piece.measures.length);
  showPiece(piece);
  document.querySelectorAll(".pieces li").forEach((li) => li.classList.toggle("current", li === item));
  setStatus(`replaying #${state.pieces.indexOf(piece) + 1} (seed ${piece.request.seed})`);
}

// ------------------------------------------------------------------------------------------ start
async function start() {
  $("controls").addEventListener("submit", generate);
  $("stop").addEventListener("click", () => {
    if (socket && state.composing) { state.stopping = true; socket.send(JSON.stringify({ type: "stop" })); }
    player.stop(); $("play-state").textContent = "stopped"; $("play-state").classList.remove("live");
  });
  $("model").addEventListener("change", (e) => { state.model = state.models.find((m) => m.ref === e.target.value); state.promptId = null; renderFields(); showStage(stageKind(state.model)); });
  const r = await fetch("/api/models");
  const j = await r.json();
  state.models = j.models; state.limits = j.limits;
  const sel = $("model");
  const label = (m) => { const name = m.ref.replace("builtin:", ""); return name === m.kind ? name : `${name} · ${m.kind}`; };
  sel.innerHTML = j.models.map((m) => `<option value="${escapeHtml(m.ref)}">${escapeHtml(label(m))}</option>`).join("")
    + j.unavailable.map((m) => `<option disabled title="${escapeHtml(m.error)}">${escapeHtml(m.ref)} (unavailable)</option>`).join("");
  state.model = j.models[0] || null;
  if (!state.model) setStatus("no models are served: train one or install the built-in models", true);
  renderFields();
  roll.reset(64);
  const h = await (await fetch("/api/health")).json();
  $("health").textContent = `v${h.version} · ${h.models.length} model${h.models.length === 1 ? "" : "s"}`;
  connect();
}
start();
