"""Notes of an ABC tune while it streams, so the page can draw and play it before the tune is finished.

An ABC composer streams text: a header, then a bar at a time, and a whole new tune when a finished one
failed its abc2midi check and is composed again. `ABCPreview` keeps the text of the tune being written,
compiles it (up to its last bar line) with abc2midi, at most every `interval` seconds, and answers the
notes that are new since the last compile:

    {"type": "notes", "attempt": 0, "voices": [{"program": 0, "name": "tune"}],
     "notes": [{"voice": 0, "pitch": 67, "start": 0.0, "duration": 0.5, "velocity": 80}, ...]}   (quarter notes)
    {"type": "restart", "attempt": 1}        a new tune begins: what was drawn so far is gone

When a compile no longer starts with what was already sent (abc2midi laid a repeat out anew), the message
carries `"replace": true` and every note. The finished piece's own notes (GET /api/pieces/ID?format=json)
are the final word.
"""

from __future__ import annotations

import time

from orchestrion.composer import Chunk, TextChunk
from orchestrion.core.abcmidi import compile_notes

TPQ = 480  # compile_notes' ticks per quarter


class ABCPreview:
    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.text = ""
        self.attempt = 0
        self.sent: list[tuple] = []
        self.compiled_at = 0.0

    def __call__(self, chunk: Chunk) -> list[dict]:
        if not isinstance(chunk, TextChunk) or chunk.complete:
            return []
        out: list[dict] = []
        start = chunk.text.find("X:")
        if start >= 0 and (start == 0 or chunk.text[start - 1] == "\n"):  # a new tune's header
            if self.text:
                self.attempt += 1
                out.append({"type": "restart", "attempt": self.attempt})
            self.text, self.sent = chunk.text[start:], []
        else:
            self.text += chunk.text
        now = time.monotonic()
        if now - self.compiled_at < self.interval:
            return out
        self.compiled_at = now
        cut = self.text.rfind("|")
        if cut < 0 or "\nK:" not in self.text[:cut]:
            return out
        validity, notes = compile_notes(self.text[: cut + 1] + "\n", timeout=5)
        if notes is None:
            return out
        replace = notes[: len(self.sent)] != self.sent
        new = notes if replace else notes[len(self.sent) :]
        self.sent = notes
        if new:
            message = {
                "type": "notes",
                "attempt": self.attempt,
                "voices": [{"program": 0, "name": "tune"}],
                "notes": [
                    {"voice": 0, "pitch": p, "start": t / TPQ, "duration": d / TPQ, "velocity": 80}
                    for _, t, p, d in new
                ],
            }
            if replace:
                message["replace"] = True
            out.append(message)
        return out
