// The piano roll (notes on a canvas, a colour per voice, its legend) and the waveform of audio pieces.
// Times are in quarter notes; the roll grows as measures arrive and redraws only when its range changes.

export const PALETTE = ["#d43d4a", "#2f74e0", "#c77d0a", "#1f8f58", "#8a4fd6", "#0f8a94", "#c9457e", "#6b8a1f",
  "#d06a2c", "#4657c9", "#8f7a12", "#23866f", "#b04599", "#5a67c4", "#95602a", "#3a7fd0"];
export const PROGRAMS = [[0, "Piano"], [6, "Harpsichord"], [11, "Vibraphone"], [19, "Church organ"],
  [24, "Nylon guitar"], [32, "Acoustic bass"], [33, "Finger bass"], [40, "Violin"], [41, "Viola"], [42, "Cello"],
  [46, "Harp"], [48, "Strings"], [52, "Choir"], [56, "Trumpet"], [57, "Trombone"], [58, "Tuba"], [60, "French horn"],
  [68, "Oboe"], [70, "Bassoon"], [71, "Clarinet"], [73, "Flute"], [74, "Recorder"], [80, "Square lead"],
  [88, "Warm pad"], [105, "Banjo"], [109, "Bagpipe"], [110, "Fiddle"]];
const KINDS = ["high melody", "low melody", "chords"];
const NAMES = ["C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B"];

export const $ = (id) => document.getElementById(id);
export function escapeHtml(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }
export function programName(p, isDrum) {
  if (isDrum) return "drums";
  const hit = PROGRAMS.find(([n]) => n === p);
  return hit ? hit[1] : `program ${p}`;
}
export function pitchName(p) { return `${NAMES[p % 12]}${Math.floor(p / 12) - 1}`; }
export function voiceName(v, i) {
  if (v.name) return v.name.charAt(0).toUpperCase() + v.name.slice(1).toLowerCase();
  return v.kind != null ? `${KINDS[v.kind] || "voice"} ${i + 1}` : `voice ${i + 1}`;
}
function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
function fit(c) {
  const r = c.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(r.width * dpr)), h = Math.max(1, Math.round(r.height * dpr));
  if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  return [w, h, dpr];
}

export const roll = {
  notes: [], voices: [], quarters: 32, lo: 48, hi: 84, measures: 0, canvas: null, head: null,
  init() { this.canvas = $("roll"); this.head = $("playhead"); window.addEventListener("resize", () => this.redraw()); },
  reset(quarters = 32) {
    this.notes = []; this.voices = []; this.quarters = Math.max(4, quarters); this.lo = 48; this.hi = 84; this.measures = 0;
    this.canvas.dataset.measures = "0";
    this.redraw();
  },
  setVoices(voices) {
    const same = voices.length === this.voices.length && voices.every((v, i) => v.program === this.voices[i].program && (v.name || "") === (this.voices[i].name || ""));
    this.voices = voices;
    if (!same) this.legend();
  },
  // Notes (times in quarters) that extend the piece; `upto` is where the material now ends.
  add(notes, upto) {
    let grew = false;
    for (const n of notes) {
      if (n.pitch < this.lo) { this.lo = Math.max(0, n.pitch - 2); grew = true; }
      if (n.pitch > this.hi) { this.hi = Math.min(127, n.pitch + 2); grew = true; }
      this.notes.push(n);
    }
    const end = Math.max(upto || 0, ...notes.map((n) => n.start + n.duration));
    if (end > this.quarters) { this.quarters = Math.ceil(end / 16) * 16; grew = true; }
    if (grew) this.redraw(); else this.draw(notes);
  },
  measure(m) {
    this.setVoices(m.voices);
    this.add(m.notes, (m.index + 1) * m.beats);
    this.measures += 1;
    this.canvas.dataset.measures = String(this.measures);
  },
  replace(notes, voices, quarters) {
    this.notes = []; this.lo = 48; this.hi = 84; this.quarters = Math.max(4, Math.ceil(quarters / 16) * 16 || 16);
    this.setVoices(voices); this.legend();
    this.add(notes, quarters);
    this.redraw();
  },
  redraw() {
    if (!this.canvas) return;
    const [w, h, dpr] = fit(this.canvas);
    const g = this.canvas.getContext("2d");
    g.fillStyle = css("--roll"); g.fillRect(0, 0, w, h);
    const rows = this.hi - this.lo + 1, rh = h / rows, qx = w / this.quarters;
    g.fillStyle = css("--grid");
    for (let p = this.lo; p <= this.hi; p++) if ([1, 3, 6, 8, 10].includes(p % 12)) g.fillRect(0, h - (p - this.lo + 1) * rh, w, rh);
    for (let q = 0; q <= this.quarters; q++) {
      g.fillStyle = q % 4 === 0 ? css("--bar") : css("--grid");
      g.fillRect(Math.round(q * qx), 0, q % 4 === 0 ? dpr : Math.max(1, dpr / 2), h);
    }
    g.fillStyle = css("--muted"); g.font = `${10 * dpr}px system-ui`;
    for (let p = Math.ceil(this.lo / 12) * 12; p <= this.hi; p += 12) g.fillText(`C${p / 12 - 1}`, 3 * dpr, h - (p - this.lo) * rh - 2 * dpr);
    this.draw(this.notes);
  },
  draw(notes) {
    const [w, h, dpr] = fit(this.canvas);
    const g = this.canvas.getContext("2d");
    const rows = this.hi - this.lo + 1, rh = h / rows, qx = w / this.quarters;
    for (const n of notes) {
      g.fillStyle = PALETTE[n.voice % PALETTE.length];
      g.globalAlpha = 0.6 + 0.4 * Math.min(1, (n.velocity || 80) / 110);
      g.fillRect(n.start * qx + dpr / 2, h - (n.pitch - this.lo + 1) * rh + 0.5, Math.max(2 * dpr, n.duration * qx - dpr), Math.max(2, rh - 1));
    }
    g.globalAlpha = 1;
  },
  legend() {
    $("legend").innerHTML = this.voices.map((v, i) => `<li><i style="background:${PALETTE[i % PALETTE.length]}" aria-hidden="true"></i>${escapeHtml(voiceName(v, i))} · ${escapeHtml(programName(v.program || 0, v.is_drum))}</li>`).join("");
  },
  playhead(quarter) {
    const [w, h, dpr] = fit(this.head);
    const g = this.head.getContext("2d");
    g.clearRect(0, 0, w, h);
    if (quarter == null || quarter < 0 || quarter > this.quarters) return;
    g.fillStyle = css("--accent");
    g.fillRect(Math.round(quarter * w / this.quarters), 0, 2 * dpr, h);
  },
  // A sentence for screen readers and the summary beside the roll.
  describe(tempo, extra = {}) {
    const n = this.notes.length;
    if (!n) return "No notes yet.";
    const end = Math.max(...this.notes.map((x) => x.start + x.duration));
    const measures = Math.ceil(end / 4 - 1e-6), secs = end * 60 / (tempo || 120);
    const lo = Math.min(...this.notes.map((x) => x.pitch)), hi = Math.max(...this.notes.map((x) => x.pitch));
    const voices = this.voices.map((v, i) => `${voiceName(v, i).toLowerCase()} (${programName(v.program || 0, v.is_drum).toLowerCase()})`);
    const parts = [`${extra.title ? `“${extra.title}”: ` : ""}${measures} measure${measures === 1 ? "" : "s"}`];
    if (extra.key) parts[0] += ` in ${extra.key}`;
    parts[0] += `, ${Math.round(tempo || 120)} quarter notes a minute, ${secs.toFixed(0)} s`;
    parts.push(`${voices.length} voice${voices.length === 1 ? "" : "s"}: ${voices.join(", ")}`);
    parts.push(`${n} notes from ${pitchName(lo)} to ${pitchName(hi)}`);
    return parts.join("; ") + ".";
  },
};

export const wave = {
  samples: [], total: 0,
  reset(total) { this.samples = []; this.total = total; $("wave").hidden = false; this.draw(); },
  add(ch) { for (let i = 0; i < ch.length; i++) this.samples.push(ch[i]); this.draw(); },
  set(ch) { this.samples = Array.from(ch); this.total = ch.length; $("wave").hidden = false; this.draw(); },
  draw() {
    const c = $("wave"), [w, h] = fit(c), g = c.getContext("2d");
    g.clearRect(0, 0, w, h);
    g.fillStyle = css("--accent");
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
