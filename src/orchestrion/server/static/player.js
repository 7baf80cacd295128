// The player: a timeline of notes (a small Web Audio synth, one timbre per General MIDI family) or of audio
// blocks, that can play, pause, resume, seek and change volume at any time, while the piece is still growing.
// Notes are scheduled half a second ahead; past the end of what has arrived it waits for the composer.

const LOOKAHEAD = 0.5;  // seconds of music scheduled ahead of the playhead
const TICK_MS = 60;

function timbre(program, isDrum) {
  if (isDrum) return { type: "square", attack: 0.001, decay: 0.08, sustain: 0, cutoff: 3000, gain: 0.12 };
  const table = [
    { type: "triangle", attack: 0.005, decay: 0.9, sustain: 0.15, cutoff: 4000, gain: 0.22 },   // piano
    { type: "sine", attack: 0.002, decay: 0.6, sustain: 0.1, cutoff: 6000, gain: 0.2 },         // chromatic perc.
    { type: "square", attack: 0.03, decay: 0.1, sustain: 0.8, cutoff: 1800, gain: 0.09 },       // organ
    { type: "triangle", attack: 0.003, decay: 0.5, sustain: 0.1, cutoff: 3000, gain: 0.22 },    // guitar
    { type: "sawtooth", attack: 0.01, decay: 0.3, sustain: 0.6, cutoff: 700, gain: 0.2 },       // bass
    { type: "sawtooth", attack: 0.08, decay: 0.2, sustain: 0.8, cutoff: 2200, gain: 0.08 },     // strings
    { type: "sawtooth", attack: 0.1, decay: 0.2, sustain: 0.8, cutoff: 1800, gain: 0.08 },      // ensemble, choir
    { type: "sawtooth", attack: 0.03, decay: 0.2, sustain: 0.7, cutoff: 2500, gain: 0.09 },     // brass
    { type: "square", attack: 0.03, decay: 0.2, sustain: 0.7, cutoff: 2200, gain: 0.08 },       // reed
    { type: "sine", attack: 0.04, decay: 0.2, sustain: 0.8, cutoff: 5000, gain: 0.2 },          // pipe
  ];
  return table[Math.floor(program / 8)] || { type: "triangle", attack: 0.02, decay: 0.3, sustain: 0.6, cutoff: 3000, gain: 0.12 };
}

export const player = {
  ctx: null, gain: null, input: null, volume: 0.8,
  notes: [], voices: [], tempo: 120, blocks: [], length: 0, growing: false,
  state: "idle", pos: 0, t0: 0, until: 0, sources: new Set(), timer: null, onchange: () => {},

  ensure() {
    if (!this.ctx) {
      const AC = window.AudioContext || window.webkitAudioContext;
      this.ctx = new AC();
      this.input = this.ctx.createDynamicsCompressor();
      this.gain = this.ctx.createGain(); this.gain.gain.value = this.volume;
      this.input.connect(this.gain).connect(this.ctx.destination);
      this.ctx.onstatechange = () => this.onchange();
    }
    if (this.ctx.state !== "running") this.ctx.resume();
    return this.ctx;
  },
  setVolume(v) { this.volume = v; if (this.gain) this.gain.gain.setTargetAtTime(v, this.ctx.currentTime, 0.02); },

  // ---- material
  clear() {
    this.silence(); this.notes = []; this.voices = []; this.blocks = []; this.length = 0; this.pos = 0;
    this.growing = false; this.setState("idle");
  },
  spq() { return 60 / (this.tempo || 120); },
  addNotes(notes, upto, tempo) {
    if (tempo) this.tempo = tempo;
    for (const n of notes) this.notes.push(n);
    this.notes.sort((a, b) => a.start - b.start);
    const end = Math.max(upto || 0, ...notes.map((n) => n.start + n.duration)) * this.spq();
    this.length = Math.max(this.length, end);
    this.grown();
  },
  setNotes(notes, voices, tempo) {
    this.notes = [...notes].sort((a, b) => a.start - b.start); this.voices = voices; this.tempo = tempo || this.tempo;
    this.length = Math.max(0, ...notes.map((n) => n.start + n.duration)) * this.spq();
    if (this.state === "playing") this.restart(this.position());
  },
  addAudio(samples, start, rate) {
    const ctx = this.ensure();
    const buf = ctx.createBuffer(1, samples.length, rate);
    buf.getChannelData(0).set(samples);
    this.blocks.push({ start, end: start + samples.length / rate, buffer: buf });
    this.length = Math.max(this.length, start + samples.length / rate);
    this.grown();
  },
  grown() { if (this.state === "waiting") this.play(); },

  // ---- transport
  position() { return this.state === "playing" && this.ctx ? Math.min(this.ctx.currentTime - this.t0, this.length) : this.pos; },
  setState(s) { this.state = s; this.onchange(); },
  play(from) {
    const ctx = this.ensure();
    if (from == null) from = this.state === "ended" ? 0 : this.pos;
    this.silence();
    this.pos = Math.max(0, Math.min(from, this.length));
    this.t0 = ctx.currentTime + 0.08 - this.pos;
    this.until = this.pos; this.scheduledBlocks = new Set();
    this.setState("playing");
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.tick();
  },
  restart(at) { this.play(at); },
  pause() { if (this.state !== "playing" && this.state !== "waiting") return; this.pos = this.position(); this.silence(); clearInterval(this.timer); this.setState("paused"); },
  stop() { this.silence(); clearInterval(this.timer); this.pos = 0; this.setState(this.notes.length || this.blocks.length ? "stopped" : "idle"); },
  seek(sec) {
    sec = Math.max(0, Math.min(sec, this.length));
    if (this.state === "playing" || this.state === "waiting") this.play(sec);
    else { this.pos = sec; if (this.state === "ended") this.setState("paused"); this.onchange(); }
  },
  silence() {
    const now = this.ctx ? this.ctx.currentTime : 0;
    for (const s of this.sources) {
      try { if (s.env) { s.env.gain.cancelScheduledValues(now); s.env.gain.setTargetAtTime(0, now, 0.015); } s.stop(now + 0.06); } catch (e) { /* already ended */ }
    }
    this.sources.clear();
  },
  tick() {
    if (this.state !== "playing") return;
    const p = this.ctx.currentTime - this.t0;
    if (p >= this.length - 1e-3) {
      clearInterval(this.timer);
      this.pos = this.length;
      if (this.growing) { this.setState("waiting"); return; }
      this.pos = 0; this.setState("ended"); return;
    }
    const horizon = Math.min(p + LOOKAHEAD, this.length);
    if (horizon <= this.until) return;
    const spq = this.spq();
    for (const n of this.notes) {
      const t = n.start * spq;
      if (t < this.until) continue;
      if (t >= horizon) break;
      this.note(n, this.voices[n.voice] || {}, this.t0 + t, n.duration * spq);
    }
    for (const [i, b] of this.blocks.entries()) {
      if (this.scheduledBlocks.has(i) || b.start >= horizon || b.end <= this.until) continue;
      this.scheduledBlocks.add(i);
      const offset = Math.max(0, this.until - b.start);
      const src = this.ctx.createBufferSource(); src.buffer = b.buffer; src.connect(this.input);
      src.start(Math.max(this.ctx.currentTime, this.t0 + b.start + offset), offset);
      this.track(src);
    }
    this.until = horizon;
  },
  track(src) { this.sources.add(src); src.onended = () => this.sources.delete(src); },
  note(n, voice, when, dur) {
    const ctx = this.ctx, t = timbre(voice.program || 0, voice.is_drum);
    const osc = ctx.createOscillator(), env = ctx.createGain(), lp = ctx.createBiquadFilter();
    osc.type = t.type;
    osc.frequency.value = 440 * Math.pow(2, (n.pitch - 69) / 12);
    lp.type = "lowpass"; lp.frequency.value = t.cutoff;
    const peak = t.gain * ((n.velocity || 80) / 100), end = when + Math.max(0.05, dur);
    env.gain.setValueAtTime(0, when);
    env.gain.linearRampToValueAtTime(peak, when + t.attack);
    env.gain.setTargetAtTime(peak * t.sustain, when + t.attack, t.decay / 3);
    env.gain.setTargetAtTime(0, end, 0.06);
    osc.connect(lp).connect(env).connect(this.input);
    osc.start(when); osc.stop(end + 0.4);
    osc.env = env;
    this.track(osc);
  },
};
