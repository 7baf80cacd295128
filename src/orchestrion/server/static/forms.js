// The options of a model as a form: one labelled control per field the model lists (GET /api/models), with
// its default, its limits and a line of help; and the request read back from the form.

import { $, PALETTE, PROGRAMS, escapeHtml, programName } from "./roll.js";

const MMM_VOICES = ["SOPRANO", "ALTO", "TENOR", "BASS"];
const PROMPT_ONLY = new Set(["fill_bars", "keep_tracks"]);
const ADVANCED = new Set(["temperature", "top_p", "top_k", "repetition_penalty", "candidates", "max_hold_bars", "chord_pull", "style"]);
const LABELS = {
  bars: "Measures", seconds: "Seconds", tempo: "Tempo (quarter notes a minute)", key: "Key", temperature: "Temperature",
  top_p: "Top-p", top_k: "Top-k", repetition_penalty: "Repetition penalty", seed: "Seed", candidates: "Candidates per bar",
  rhythm: "Rhythm", meter: "Meter", form: "Length", title: "Title", style: "Style", chord_pull: "Pull melodies to the chords",
  max_hold_bars: "Longest held note (measures)", fill_bars: "Measures to compose again", keep_tracks: "Tracks to keep",
  programs: "Instrument", instruments: "Voices", voices: "Voices",
};
const FORM_NAMES = { strains: "two repeated 8-bar strains", free: "free length" };

function el(html) { const t = document.createElement("template"); t.innerHTML = html.trim(); return t.content.firstElementChild; }
function helpOf(model, name) {
  const text = (model.help || {})[name];
  return text ? `<small class="help" id="h-${name}">${escapeHtml(text)}</small>` : "";
}
function described(model, name) { return (model.help || {})[name] ? ` aria-describedby="h-${name}"` : ""; }
function fmt(v) { return Number.isInteger(v) ? String(v) : String(Math.round(v * 100) / 100); }
function programOptions(selected) {
  return PROGRAMS.map(([p, name]) => `<option value="${p}"${p === selected ? " selected" : ""}>${name}</option>`).join("");
}

// values: the defaults, overridden by a request being recalled (same seed, a piece opened by its link).
export function renderFields(model, values, ui) {
  const box = $("fields");
  box.innerHTML = "";
  const promptBox = el(`<div id="prompt-options" class="prompt-options" hidden></div>`);
  const more = el(`<details class="advanced"><summary>Sampling and more</summary></details>`);
  for (const name of model.fields) {
    const lim = (model.limits || {})[name] || {};
    const node = field(model, name, values[name] ?? (ADVANCED.has(name) ? lim.default : undefined), values, ui);
    if (!node) continue;
    (PROMPT_ONLY.has(name) ? promptBox : ADVANCED.has(name) ? more : box).appendChild(node);
  }
  if (more.children.length > 1) box.appendChild(more);
  if (promptBox.children.length) box.appendChild(promptBox);
}

function field(model, name, value, values, ui) {
  const lim = (model.limits || {})[name] || {}, choices = (model.choices || {})[name], label = LABELS[name] || name;
  const id = `f-${name}`;
  if (name === "voices") return voicesEditor(model, values);
  if (name === "instruments") return tracksEditor(model, value || MMM_VOICES);
  if (name === "prompt") return promptField(model, ui);
  if (name === "programs") {
    if (model.fields.includes("voices")) return null;  // markov: the voices editor sets them
    const p = Array.isArray(value) ? value[0] : 0;
    return el(`<div class="field"><label for="${id}">${label}</label><select id="${id}" name="programs" data-kind="program">${programOptions(p)}</select></div>`);
  }
  if (["temperature", "top_p", "repetition_penalty"].includes(name)) {
    const [min, max, step] = { temperature: [0.1, 2, 0.05], top_p: [0.05, 1, 0.05], repetition_penalty: [1, 2, 0.05] }[name];
    const v = value ?? (name === "repetition_penalty" ? 1 : 1);
    const f = el(`<div class="field"><label for="${id}">${label} <output class="value" for="${id}">${fmt(v)}</output></label>
      <input type="range" id="${id}" name="${name}" min="${min}" max="${Math.min(max, lim.max ?? max)}" step="${step}" value="${v}"${described(model, name)}>${helpOf(model, name)}</div>`);
    const input = f.querySelector("input"), out = f.querySelector("output");
    input.addEventListener("input", () => { out.textContent = fmt(Number(input.value)); });
    return f;
  }
  if (name === "chord_pull") {
    return el(`<div class="field"><label class="check"><input type="checkbox" id="${id}" name="${name}"${value === false ? "" : " checked"}${described(model, name)}> ${label}</label>${helpOf(model, name)}</div>`);
  }
  if (choices && ["key", "rhythm", "meter", "form", "style"].includes(name)) {
    const open = { key: "the model chooses", rhythm: "the model chooses", meter: "the rhythm's own", form: "the rhythm's own" }[name];
    const opts = (open ? [`<option value="">${open}</option>`] : []).concat(
      choices.map((c) => `<option value="${escapeHtml(c)}"${c === value ? " selected" : ""}>${escapeHtml(FORM_NAMES[c] || c)}</option>`));
    return el(`<div class="field"><label for="${id}">${label}</label><select id="${id}" name="${name}"${described(model, name)}>${opts.join("")}</select>${helpOf(model, name)}</div>`);
  }
  if (name === "title" || name === "fill_bars" || name === "meter" || name === "key") {
    const ph = { fill_bars: "e.g. 3-4", title: "the model writes one", meter: "e.g. 6/8", key: "e.g. D minor" }[name];
    return el(`<div class="field"><label for="${id}">${label}</label><input type="text" id="${id}" name="${name}" value="${escapeHtml(textValue(name, value))}" placeholder="${ph}"${described(model, name)}>${helpOf(model, name)}</div>`);
  }
  if (name === "keep_tracks") {
    return el(`<fieldset class="field tracks-keep" id="${id}" data-name="keep_tracks"${described(model, name)}><legend>${label}</legend><div class="keep-list"></div>${helpOf(model, name)}</fieldset>`);
  }
  const step = name === "seconds" || name === "tempo" || name === "max_hold_bars" ? "any" : "1";
  const min = lim.min ?? 0, max = lim.max;
  const placeholder = { seed: ' placeholder="new each time"', candidates: ' placeholder="the model\'s own"', tempo: ' placeholder="the rhythm\'s own"' }[name] || "";
  const v = value ?? "";
  return el(`<div class="field"><label for="${id}">${label}</label><input type="number" id="${id}" name="${name}" min="${min}"${max != null ? ` max="${max}"` : ""} step="${step}" value="${v}"${placeholder}${described(model, name)}>${helpOf(model, name)}</div>`);
}

function textValue(name, value) {
  if (value == null) return "";
  if (name === "fill_bars" && Array.isArray(value)) return value.map((b) => b + 1).join(",");
  return String(value);
}

function voicesEditor(model, values) {
  const kinds = (model.options && model.options.voice_kinds) || { 0: "high melody", 1: "low melody", 2: "chords" };
  const defaults = (model.options && model.options.default_programs) || { 0: [73], 1: [42], 2: [0] };
  const max = ((model.limits || {}).voices || {}).max || 16;
  const voices = (values.voices || [0, 1, 2]).map((kind, i) => ({ kind, program: (values.programs || [])[i] ?? (defaults[kind] || [0])[0] }));
  const box = el(`<fieldset class="voices field" id="voices"><legend>Voices <small>(up to ${max})</small></legend><ol class="voice-list"></ol>
    <button type="button" class="ghost add">Add a voice</button>${helpOf(model, "voices")}</fieldset>`);
  const list = box.querySelector("ol");
  const draw = () => {
    list.innerHTML = "";
    voices.forEach((v, i) => {
      const row = el(`<li class="voice"><span class="swatch" style="background:${PALETTE[i % PALETTE.length]}" aria-hidden="true"></span>
        <label class="sr-only" for="vk-${i}">Voice ${i + 1}: part</label>
        <select id="vk-${i}" class="kind">${Object.entries(kinds).map(([k, n]) => `<option value="${k}"${Number(k) === v.kind ? " selected" : ""}>${escapeHtml(n)}</option>`).join("")}</select>
        <label class="sr-only" for="vp-${i}">Voice ${i + 1}: instrument</label>
        <select id="vp-${i}" class="program">${programOptions(v.program)}</select>
        <button type="button" class="ghost remove" aria-label="Remove voice ${i + 1}" ${voices.length <= 1 ? "disabled" : ""}>✕</button></li>`);
      row.querySelector(".kind").addEventListener("change", (e) => { v.kind = Number(e.target.value); });
      row.querySelector(".program").addEventListener("change", (e) => { v.program = Number(e.target.value); });
      row.querySelector(".remove").addEventListener("click", () => { voices.splice(i, 1); draw(); });
      list.appendChild(row);
    });
    box.querySelector(".add").disabled = voices.length >= max;
  };
  box.querySelector(".add").addEventListener("click", () => {
    const kind = voices.length % 3; voices.push({ kind, program: (defaults[kind] || [0])[0] }); draw();
  });
  box.read = () => ({ voices: voices.map((v) => v.kind), programs: voices.map((v) => v.program) });
  draw();
  return box;
}

function tracksEditor(model, initial) {
  const tracks = [...initial];
  const names = MMM_VOICES.concat(PROGRAMS.map(([p]) => String(p)));
  const label = (t) => (MMM_VOICES.includes(t) ? t.charAt(0) + t.slice(1).toLowerCase() : programName(Number(t)));
  const box = el(`<fieldset class="voices field" id="voices"><legend>Voices</legend><ol class="voice-list"></ol>
    <button type="button" class="ghost add">Add a voice</button>${helpOf(model, "instruments")}</fieldset>`);
  const list = box.querySelector("ol");
  const draw = () => {
    list.innerHTML = "";
    tracks.forEach((t, i) => {
      const row = el(`<li class="voice"><span class="swatch" style="background:${PALETTE[i % PALETTE.length]}" aria-hidden="true"></span>
        <label class="sr-only" for="vi-${i}">Voice ${i + 1}</label>
        <select id="vi-${i}">${names.map((n) => `<option value="${n}"${n === t ? " selected" : ""}>${escapeHtml(label(n))}</option>`).join("")}</select>
        <button type="button" class="ghost remove" aria-label="Remove voice ${i + 1}" ${tracks.length <= 1 ? "disabled" : ""}>✕</button></li>`);
      row.querySelector("select").addEventListener("change", (e) => { tracks[i] = e.target.value; });
      row.querySelector(".remove").addEventListener("click", () => { tracks.splice(i, 1); draw(); });
      list.appendChild(row);
    });
    box.querySelector(".add").disabled = tracks.length >= 8;
  };
  box.querySelector(".add").addEventListener("click", () => { tracks.push(MMM_VOICES[tracks.length % 4]); draw(); });
  box.read = () => ({ instruments: [...tracks] });
  draw();
  return box;
}

function promptField(model, ui) {
  const kinds = model.prompts || [];
  const accept = kinds.map((k) => ({ mid: ".mid,.midi", abc: ".abc,.txt", wav: ".wav" }[k])).join(",");
  const what = kinds.map((k) => ({ mid: "a MIDI", abc: "an ABC", wav: "a WAV" }[k])).join(" or ");
  const f = el(`<div class="field"><label for="f-prompt">Prompt: ${what} file to continue</label>
    <input type="file" id="f-prompt" accept="${accept}" aria-describedby="prompt-info">
    <p class="hint prompt-info" id="prompt-info" aria-live="polite"></p>
    <button type="button" class="ghost" id="prompt-clear" hidden>Remove the prompt</button></div>`);
  f.querySelector("input").addEventListener("change", (e) => { const file = e.target.files[0]; if (file) ui.upload(file); });
  f.querySelector("#prompt-clear").addEventListener("click", () => ui.setPrompt(null));
  return f;
}

// The prompt's own options (infill, tracks to keep) appear once there is a prompt.
export function showPromptOptions(prompt) {
  const box = $("prompt-options"), clear = $("prompt-clear"), info = $("prompt-info");
  if (clear) clear.hidden = !prompt;
  if (info) info.textContent = prompt ? `Prompt: ${prompt.name} (${prompt.kind}${prompt.tracks ? `, ${prompt.tracks} tracks` : ""})` : "";
  if (!box) return;
  box.hidden = !prompt || prompt.kind !== "mid";
  const keep = box.querySelector(".keep-list");
  if (keep && prompt) {
    const names = prompt.voices || Array.from({ length: prompt.tracks || 0 }, (_, i) => `track ${i + 1}`);
    keep.innerHTML = names.map((n, i) => `<label class="check"><input type="checkbox" value="${i}"> ${escapeHtml(n)}</label>`).join("");
  }
}

export function readRequest(model, promptId) {
  const req = { model: model.ref };
  for (const input of $("fields").querySelectorAll("input[name], select[name]")) {
    if (input.closest("[hidden]")) continue;
    const name = input.name;
    if (input.type === "checkbox") { req[name] = input.checked; continue; }
    if (input.value === "") continue;
    if (name === "programs") { req.programs = [Number(input.value)]; continue; }
    if (name === "fill_bars") { req.fill_bars = parseBars(input.value); continue; }
    req[name] = input.type === "number" || input.type === "range" ? Number(input.value) : input.value;
  }
  const voices = $("voices");
  if (voices && voices.read) Object.assign(req, voices.read());
  const keep = $("f-keep_tracks");
  if (keep && !keep.closest("[hidden]")) {
    const chosen = [...keep.querySelectorAll("input:checked")].map((i) => Number(i.value));
    if (chosen.length) req.keep_tracks = chosen;
  }
  if (promptId) req.prompt = promptId;
  return req;
}

// "3-4, 7" (measures counted from 1) -> [2, 3, 6]
export function parseBars(text) {
  const out = [];
  for (const part of text.split(/[ ,]+/).filter(Boolean)) {
    const [a, b] = part.split("-").map(Number);
    for (let i = a; i <= (b || a); i++) if (i >= 1) out.push(i - 1);
  }
  return out;
}
