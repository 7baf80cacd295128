// orchestrion web client: pick a model, set its options, stream a piece over /stream, draw it as it arrives
// and play it while the rest is still being composed. Pieces stay on the server (the last 128): the history
// lists them, /piece/ID opens one. No build step, no libraries.

import { renderFields, readRequest, showPromptOptions } from "./forms.js";
import { player } from "./player.js";
import { $, escapeHtml, roll, wave } from "./roll.js";

const LEAD_SECONDS = 8;
const PIECE_PATH = /^\/piece\/([0-9a-f]{16})$/;

// What tests and the curious can read: what arrived, whether sound is playing, the pieces listed.
const state = window.orchestrion = {
  models: [], model: null, measures: 0, chunks: 0, playbackStarted: false, audioState: "none",
  composing: false, pieces: [], current: null, prompt: null, stopping: false, ready: false, player,
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
    roll.redraw(); wave.draw();
  });
})();

// --------------------------------------------------------------------------------------- messages
function setStatus(text) { $("status").textContent = text; }
function setError(text) { $("error").textContent = text || ""; }
function showError(msg) {
  setError(`${msg.field}: ${msg.message}`);
  const target = document.querySelector(`#fields [name="${msg.field}"]`) || (/^(voices|programs|instruments)/.test(msg.field) ? $("voices") : null);
  if (target) { target.classList.add("invalid"); target.setAttribute("aria-invalid", "true"); }
}
function clearInvalid() {
  document.querySelectorAll(".invalid").forEach((n) => { n.classList.remove("invalid"); n.removeAttribute("aria-invalid"); });
  setError("");
}

// ---------------------------------------------------------------------------------------- transport
function mmss(s) { s = Math.max(0, s || 0); return `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`; }
const LABELS = { idle: "idle", playing: "playing", paused: "paused", waiting: "waiting for the composer", stopped: "stopped", ended: "ended" };
player.onchange = () => {
  const pill = $("play-state");
  pill.textContent = LABELS[player.state] || player.state;
  pill.classList.toggle("live", player.state === "playing");
  const playing = player.state === "playing" || player.state === "waiting";
  $("play").textContent = playing ? "❚❚ Pause" : "▶ Play";
  $("play").setAttribute("aria-label", playing ? "Pause" : "Play");
  state.audioState = player.ctx ? player.ctx.state : "none";
  if (player.state === "playing" && player.ctx && player.ctx.state === "running") state.playbackStarted = true;
};
function bindTransport() {
  $("play").addEventListener("click", () => {
    if (player.state === "playing" || player.state === "waiting") player.pause(); else player.play();
  });
  $("halt").addEventListener("click", () => player.stop());
  const seek = $("seek");
  seek.addEventListener("input", () => { seek.dragging = true; $("clock").textContent = `${mmss(Number(seek.value))} / ${mmss(player.length)}`; });
  seek.addEventListener("change", () => { seek.dragging = false; player.seek(Number(seek.value)); });
  const volume = $("volume");
  volume.value = localStorage.getItem("orchestrion-volume") || "0.8";
  player.setVolume(Number(volume.value));
  volume.addEventListener("input", () => { player.setVolume(Number(volume.value)); localStorage.setItem("orchestrion-volume", volume.value); });
  (function animate() {
    const pos = player.position();
    roll.playhead(player.notes.length && player.state !== "idle" ? pos / player.spq() : null);
    if (!seek.dragging) {
      seek.max = String(player.length || 0); seek.value = String(pos);
      $("clock").textContent = `${mmss(pos)} / ${mmss(player.length)}`;
      seek.setAttribute("aria-valuetext", `${mmss(pos)} of ${mmss(player.length)}`);
    }
    requestAnimationFrame(animate);
  })();
}

// ------------------------------------------------------------------------------------------ stage
function stageKind(model) {
  if (!model) return "roll";
  if (model.output === "audio") return "audio";
  return "roll";
}
function showStage(kind, abc = false) {
  $("roll-wrap").hidden = kind !== "roll";
  $("wave").hidden = kind !== "audio";
  $("voices-h").hidden = $("legend").hidden = kind === "audio";
  $("piece-title").textContent = kind === "audio" ? "Waveform" : abc ? "Tune" : "Piano roll";
  $("count-unit").textContent = kind === "audio" ? "seconds" : "measures";
  if (kind === "roll") roll.redraw();
}
function resetStage(model, req) {
  player.clear(); clearPieceTools();
  roll.reset((req.bars || 8) * 4);
  $("legend").innerHTML = ""; $("summary").textContent = "Composing…";
  $("abc").hidden = true; $("abc").textContent = "";
  showStage(stageKind(model), (model.options || {}).encoding === "abc");
  if (stageKind(model) === "audio") wave.reset((req.seconds || (model.defaults || {}).seconds || 4) * ((model.options || {}).sample_rate || 16000));
  $("measure-count").textContent = "0";
  setProgress(0, null, "");
}
function setProgress(done, total, text) {
  const bar = $("progress");
  if (total) { bar.max = total; bar.value = Math.min(done, total); } else if (done === null) bar.removeAttribute("value"); else { bar.max = 1; bar.value = done ? 1 : 0; }
  $("progress-text").textContent = text;
}
function updateSummary(extra = {}) {
  const text = roll.describe(player.tempo, extra);
  $("summary").textContent = text;
  $("roll").setAttribute("aria-label", `Piano roll. ${text}`);
}
function clearPieceTools() {
  $("piece-tools").hidden = true; $("score").hidden = true; $("score").innerHTML = "";
  $("audio").removeAttribute("src"); $("rendered").open = false;
}

// ----------------------------------------------------------------------------------------- stream
let socket = null;
function connect() {
  return new Promise((resolve, reject) => {
    if (socket && socket.readyState === WebSocket.OPEN) return resolve(socket);
    socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/stream`);
    socket.onopen = () => { if (!state.composing) setStatus("ready"); resolve(socket); };
    socket.onerror = () => reject(new Error("cannot reach the server"));
    socket.onmessage = (e) => onMessage(JSON.parse(e.data));
    socket.onclose = () => { if (state.composing) { finish(); setError("the connection to the server was lost: press Generate to try again"); } socket = null; };
  });
}

async function generate(ev) {
  if (ev) ev.preventDefault();
  const gen = $("generate");
  gen.focus();
  if (!state.model) return;
  if (state.composing) { setStatus("a piece is being composed: press Stop first"); return; }
  clearInvalid();
  player.ensure();  // inside the click, so the browser lets the page make sound
  const req = readRequest(state.model, state.prompt && state.prompt.id);
  state.current = { request: req, measures: [], model: state.model, notes: 0, tracks: new Set(), bars: 0, audio: 0 };
  state.measures = 0; state.chunks = 0; state.playbackStarted = false; state.stopping = false;
  resetStage(state.model, req);
  player.growing = true;
  state.composing = true;
  gen.setAttribute("aria-disabled", "true");
  setStatus("composing…");
  if (window.matchMedia("(max-width: 820px)").matches) document.querySelector(".stage").scrollIntoView({ behavior: "smooth" });
  try {
    // lead: the server composes at most this many seconds ahead of what we play, so notes come as needed.
    (await connect()).send(JSON.stringify({ ...req, lead: LEAD_SECONDS }));
  } catch (e) {
    finish(); setError(`${e.message}: is orchestrion serve still running?`);
  }
}

function startPlaying() { if (player.state === "idle") player.play(0); }

function onMessage(msg) {
  const cur = state.current;
  if (msg.type === "start") { if (cur) cur.request = msg.request; setStatus(`composing (seed ${msg.request.seed})…`); return; }
  if (msg.type === "error") { showError(msg); finish(); setStatus("not composed"); return; }
  if (!cur || (state.stopping && msg.type !== "end")) return;  // what was on its way when Stop was pressed
  const total = cur.request.bars || null;
  if (msg.type === "measure") {
    cur.measures.push(msg);
    roll.measure(msg);
    player.voices = msg.voices;
    player.addNotes(msg.notes, (msg.index + 1) * msg.beats, msg.tempo);
    state.measures += 1;
    $("measure-count").textContent = String(state.measures);
    setProgress(state.measures, total, total ? `measure ${state.measures} of ${total}` : `${state.measures} measures`);
    updateSummary({ key: cur.request.key });
    startPlaying();
  } else if (msg.type === "audio") {
    const ch = Float32Array.from(msg.samples, (s) => s / 32768);
    wave.add(ch); player.addAudio(ch, msg.sample / msg.sample_rate, msg.sample_rate);
    const secs = (msg.sample + msg.samples.length) / msg.sample_rate, want = cur.request.seconds;
    $("measure-count").textContent = secs.toFixed(1);
    setProgress(secs, want, want ? `${secs.toFixed(1)} of ${want} s` : `${secs.toFixed(1)} s`);
    startPlaying();
  } else if (msg.type === "notes") {
    if (msg.replace) { roll.replace(msg.notes, msg.voices, 0); player.setNotes(msg.notes, msg.voices, cur.request.tempo); } else {
      roll.setVoices(msg.voices); roll.add(msg.notes, 0);
      player.voices = msg.voices; player.addNotes(msg.notes, 0, cur.request.tempo);
    }
    const bars = Math.ceil(Math.max(0, ...roll.notes.map((n) => n.start + n.duration)) / 4);
    $("measure-count").textContent = String(bars);
    updateSummary({});
    startPlaying();
  } else if (msg.type === "restart") {
    player.stop(); player.clear(); player.growing = true; roll.reset(32);
    cur.bars = 0;
    setProgress(null, null, `the tune did not pass abc2midi's check: composing it again (try ${msg.attempt + 1})`);
  } else if (msg.type === "text") {
    onText(cur, msg);
  } else if (msg.type === "end") {
    onEnd(cur, msg);
    return;
  }
  state.chunks += 1;
}

// Text chunks: an mmm bar of one voice ("INST=ALTO bar 2: ...") is progress; ABC text is the tune so far.
function onText(cur, msg) {
  const mmm = /^INST=(\S+) bar (\d+):/.exec(msg.text);
  if (mmm) {
    cur.tracks.add(mmm[1]); cur.bars += 1;
    const voices = (cur.request.instruments || []).length || cur.tracks.size;
    const total = (cur.request.bars || 4) * voices;
    const name = /^\d+$/.test(mmm[1]) ? `voice ${[...cur.tracks].indexOf(mmm[1]) + 1}` : mmm[1].toLowerCase();
    setProgress(cur.bars, total, `composing the ${name}, measure ${Number(mmm[2]) + 1}`);
    return;
  }
  const pre = $("abc");
  pre.hidden = false;
  if (msg.complete) { pre.textContent = msg.text; return; }
  if (/(^|\n)X:/.test(msg.text)) pre.textContent = msg.text.replace(/^\n+/, ""); else pre.textContent += msg.text;
  cur.bars += (msg.text.match(/\|/g) || []).length ? 1 : 0;
  setProgress(null, null, `${cur.bars} bar${cur.bars === 1 ? "" : "s"} written`);
}

async function onEnd(cur, msg) {
  cur.id = msg.piece; cur.summary = msg.summary || {};
  finish();
  player.growing = false;
  if (player.state === "waiting") { player.pos = 0; player.setState("ended"); }
  const made = cur.measures.length ? `${cur.measures.length} measures`
    : player.blocks.length ? `${player.length.toFixed(1)} s of audio` : `${cur.bars} bars`;
  setStatus(`${msg.stopped ? "stopped" : "done"}: ${made} · seed ${cur.request.seed}`);
  setProgress(1, 1, msg.stopped ? "stopped" : "finished");
  await openPiece(cur.id, { keepPlaying: true, request: cur.request });
  refreshHistory();
}

function finish() {
  state.composing = false;
  $("generate").removeAttribute("aria-disabled");
}

function stop() {
  if (socket && state.composing) { state.stopping = true; socket.send(JSON.stringify({ type: "stop" })); }
  player.growing = false;
  player.stop();
}

// ------------------------------------------------------------------------------------- a finished piece
// Draw a stored piece (its exact notes, score and downloads) and offer what can be done with it.
async function openPiece(id, { keepPlaying = false, request = null } = {}) {
  const r = await fetch(`/api/pieces/${id}?format=json`);
  if (!r.ok) { const j = await r.json().catch(() => ({})); setError(j.message || `no piece ${id}`); return null; }
  const piece = await r.json();
  const summary = piece.summary || {};
  state.current = { ...(state.current && state.current.id === id ? state.current : {}), id, request: request || piece.provenance.request, summary, piece };
  const model = state.models.find((m) => m.ref === piece.provenance.model);
  if (piece.abc && piece.voices) piece.voices = piece.voices.map((v) => ({ ...v, name: "melody" }));
  if (piece.notes) {
    const quarters = Math.max(4, ...piece.notes.map((n) => n.start + n.duration));
    showStage("roll", !!piece.abc);
    roll.replace(piece.notes, piece.voices, quarters);
    roll.measures = Math.ceil(quarters / 4 - 1e-6); roll.canvas.dataset.measures = String(roll.measures);
    if (keepPlaying && player.notes.length) {
      if (player.notes.length !== piece.notes.length || piece.abc) player.setNotes(piece.notes, piece.voices, piece.tempo);
    } else { player.clear(); player.voices = piece.voices; player.addNotes(piece.notes, quarters, piece.tempo); }
    $("measure-count").textContent = String(summary.measures ?? roll.measures);
  } else if (piece.audio) {
    showStage("audio");
    if (!keepPlaying || !player.blocks.length) {
      const buf = await (await fetch(`/api/pieces/${id}?format=wav`)).arrayBuffer();
      const audio = await player.ensure().decodeAudioData(buf);
      player.clear(); wave.set(audio.getChannelData(0));
      player.addAudio(audio.getChannelData(0), 0, audio.sampleRate);
    }
    $("measure-count").textContent = String(summary.seconds ?? "");
  }
  if (piece.abc) { $("abc").hidden = false; $("abc").textContent = piece.abc; }
  updateSummary({ title: summary.title, key: summary.key });
  if (piece.audio) {
    const verdict = summary.verdict ? ` Heard as ${summary.verdict.label}${summary.verdict.reason ? `: ${summary.verdict.reason}` : ""}.` : "";
    $("summary").textContent = `${summary.seconds} s of audio (seed ${summary.seed}).${verdict}`;
  }
  showTools(id, summary, model, piece);
  return piece;
}

async function showTools(id, summary, model, piece) {
  const link = (fmt) => `/api/pieces/${id}?format=${fmt}`;
  const formats = new Set(piece.audio ? ["wav", "json"] : ["mid", "wav", "svg", "json", ...(piece.abc ? ["abc"] : [])]);
  for (const fmt of ["mid", "wav", "abc", "svg", "json"]) { const a = $(`dl-${fmt}`); a.href = link(fmt); a.hidden = !formats.has(fmt); }
  $("permalink").href = `/piece/${id}`;
  $("audio").src = link("wav");
  $("rendered").hidden = !!piece.audio;
  $("continue").hidden = !model || !(model.prompts || []).length;
  $("again").hidden = $("vary").hidden = !model;
  $("piece-tools").hidden = false;
  if (formats.has("svg")) {
    const r = await fetch(link("svg"));
    if (r.ok && state.current && state.current.id === id) {
      $("score").innerHTML = await r.text();
      $("score").setAttribute("aria-label", `Score of ${summary.title || "the piece"}`);
      $("score").hidden = false;
    }
  }
}

// Same seed / vary / continue: the piece's request back in the form, then Generate.
async function recompose(how) {
  const cur = state.current;
  if (!cur || !cur.request || state.composing) return;
  const req = { ...cur.request };
  const model = state.models.find((m) => m.ref === req.model);
  if (!model) { setError(`${req.model} is not served any more`); return; }
  if (how === "vary") delete req.seed;
  let prompt = null;
  if (how === "continue") {
    const r = await fetch(`/api/pieces/${cur.id}/prompt`, { method: "POST" });
    const j = await r.json();
    if (!r.ok) { setError(j.message); return; }
    prompt = { ...j, voices: (cur.piece && cur.piece.voices || []).map((v) => v.name || `voice`) , tracks: (cur.piece && cur.piece.voices || []).length };
    delete req.seed;
    if (model.fields.includes("bars")) req.bars = (cur.summary.measures || req.bars || 4) + 4;
  } else if (req.prompt) {
    prompt = { id: req.prompt, name: `prompt ${req.prompt}`, kind: (model.prompts || [])[0] };
  }
  selectModel(model, req);
  setPrompt(prompt);
  generate();
}

// ---------------------------------------------------------------------------------------- history
async function refreshHistory() {
  const r = await fetch("/api/pieces?limit=128").catch(() => null);
  if (!r || !r.ok) return;
  state.pieces = (await r.json()).pieces;
  const list = $("pieces");
  if (!state.pieces.length) { list.innerHTML = `<li class="hint">Pieces you make appear here (the server keeps the last 128).</li>`; return; }
  const current = state.current && state.current.id;
  list.innerHTML = state.pieces.map((p) => {
    const name = escapeHtml(String(p.model || "").replace("builtin:", ""));
    const length = p.kind === "audio" ? `${p.seconds} s of audio` : p.measures ? `${p.measures} measures` : "a tune";
    const when = new Date(p.created).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const title = p.title ? ` · ${escapeHtml(p.title)}` : "";
    return `<li class="piece${p.id === current ? " current" : ""}"><button type="button" class="open" data-id="${p.id}">
      <span class="name">${name}${title}</span><span class="meta">${length}${p.key ? ` · ${escapeHtml(p.key)}` : ""} · seed ${p.seed ?? "?"} · ${when}</span></button>
      <a href="/piece/${p.id}" aria-label="Link to the ${name} piece of ${when}">link</a></li>`;
  }).join("");
}

async function openFromHistory(id) {
  if (state.composing) stop();
  player.stop();
  clearPieceTools(); clearInvalid();
  const piece = await openPiece(id);
  if (!piece) return;
  const model = state.models.find((m) => m.ref === piece.provenance.model);
  if (model) selectModel(model, piece.provenance.request);
  history.replaceState(null, "", `/piece/${id}`);
  setStatus(`piece ${id} (seed ${piece.provenance.request.seed}): press Play to hear it`);
  refreshHistory();
}

// ------------------------------------------------------------------------------------------ model
function selectModel(model, values = null) {
  const changed = state.model !== model;
  if (changed && state.composing) stop();
  if (changed && !values) { player.stop(); player.clear(); }
  state.model = model;
  $("model").value = model.ref;
  $("model-desc").textContent = model.description;
  const defaults = { ...(model.defaults || {}) };
  renderFields(model, values ? { ...defaults, ...values } : defaults, { upload, setPrompt });
  if (changed) setPrompt(null);
  if (!values) { showStage(stageKind(model), (model.options || {}).encoding === "abc"); }
}

async function upload(file) {
  const body = new FormData(); body.append("file", file);
  $("prompt-info").textContent = "checking…";
  const r = await fetch(`/api/prompts?model=${encodeURIComponent(state.model.ref)}`, { method: "POST", body });
  const j = await r.json().catch(() => ({ message: `${file.name}: ${r.status} ${r.statusText}` }));
  if (r.ok) { setPrompt({ ...j }); setError(""); } else {
    setPrompt(null);
    setError(`prompt: ${j.message}`);
    $("prompt-info").textContent = j.message;
    $("f-prompt").value = "";
  }
}

function setPrompt(prompt) {
  state.prompt = prompt;
  showPromptOptions(prompt);
}

// ------------------------------------------------------------------------------------------ start
async function start() {
  roll.init();
  bindTransport();
  $("controls").addEventListener("submit", generate);
  $("stop").addEventListener("click", stop);
  $("again").addEventListener("click", () => recompose("again"));
  $("vary").addEventListener("click", () => recompose("vary"));
  $("continue").addEventListener("click", () => recompose("continue"));
  $("model").addEventListener("change", (e) => selectModel(state.models.find((m) => m.ref === e.target.value)));
  $("pieces").addEventListener("click", (e) => {
    const button = e.target.closest("button.open");
    if (button) openFromHistory(button.dataset.id);
  });
  window.addEventListener("focus", refreshHistory);
  const j = await (await fetch("/api/models")).json();
  state.models = j.models;
  const label = (m) => { const name = m.ref.replace("builtin:", ""); return name === m.kind ? name : `${name} · ${m.kind}`; };
  $("model").innerHTML = j.models.map((m) => `<option value="${escapeHtml(m.ref)}">${escapeHtml(label(m))}</option>`).join("")
    + j.unavailable.map((m) => `<option disabled>${escapeHtml(m.ref)} (unavailable)</option>`).join("");
  roll.reset(64);
  const first = j.models.find((m) => m.ref === localStorage.getItem("orchestrion-model")) || j.models[0];
  if (first) selectModel(first); else setError("no models are served: train one or install the built-in models");
  $("model").addEventListener("change", () => localStorage.setItem("orchestrion-model", state.model.ref));
  await refreshHistory();
  const opened = PIECE_PATH.exec(location.pathname);
  if (opened) await openFromHistory(opened[1]);
  const h = await (await fetch("/api/health")).json();
  $("health").textContent = `v${h.version} · ${h.models.length} model${h.models.length === 1 ? "" : "s"}`;
  state.ready = true;
  connect().catch(() => setError("cannot reach the server's /stream"));
}
start();
