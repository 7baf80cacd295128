"""ABC constraints: the header-forcing processor, the body syntax automaton, the ABC prompt plan.

`ABCHeader` forces the header of a spaceless ABC tune (X:, T:, R:, M:, L:, K:, values from the request or
spelled from known ones) and runs the body through `abc_step`, a character automaton of the syntax
abc2midi accepts. `abc_plan` turns a request and its prompt into an `ABCPlan`: the header fields to force
and the body to start from. Like the processors in `orchestrion.core.sampling`, `ABCHeader` is a
`LogitsProcessor`; `orchestrion.abc.sampler` runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from orchestrion.abc import text as abccodec
from orchestrion.errors import InvalidRequest

if TYPE_CHECKING:
    from orchestrion.requests import ComposeRequest

NEG_INF = float("-inf")


@dataclass
class ABCPlan:
    """What `abc_plan` makes of a request: the header fields to force and the body to start from."""

    fields: list[tuple[str, str | None]]  # (letter, value) in order; None: the model writes the value
    body: str = ""  # the prompt's first bars, spaceless ("" to start the body afresh)


def _abc_parts(tune: str) -> tuple[dict[str, str], list[str]]:
    """A tune's header fields (`orchestrion.abc.text.header`) and its body bars (spaceless, bar lines kept)."""
    text = abccodec.spaceless(tune) if " " in tune else tune
    head = abccodec.header(text)
    lines = text.strip("\n").split("\n")
    k = next((i for i, line in enumerate(lines) if line.startswith("K:")), -1)
    body = "\n".join(lines[k + 1 :])
    bars: list[str] = []
    pending = ""
    for piece in re.findall(r"[^|]*\|+:?", body):  # each bar with the bar line that closes it
        pending += piece
        if re.search(r"[A-Ga-gzxZ]", pending):  # a leading "|:" belongs to the first bar with notes
            bars.append(pending)
            pending = ""
    return head, bars


def abc_plan(request: ComposeRequest, prompt_text: str | None) -> ABCPlan:
    """Header fields to force (title, rhythm, meter, unit, key) and the body to start from.

    A prompt tune (or `variations_of`) gives its header and its first bars: `request.bars` of them when
    continuing (default 2), one bar for variations; request fields override the prompt's.
    """
    head: dict[str, str] = {}
    body = ""
    source = prompt_text if prompt_text is not None else request.variations_of
    if source is not None:
        if "\n" not in source and Path(source).is_file():
            source = Path(source).read_text(errors="replace")
        head, bars = _abc_parts(source)
        if not bars:
            raise InvalidRequest("prompt", "the prompt tune has no bars to continue")
        keep = 1 if prompt_text is None else (request.bars or 2)
        body = "".join(bars[:keep])
    key = None
    if request.key:
        tonic, _, mode = request.key.partition(" ")
        key = tonic + ("m" if mode == "minor" else "")
    title = request.title or head.get("title") or None
    fields: list[tuple[str, str | None]] = [("X", "1"), ("T", title)]
    # R: comes after T: in the corpus; when neither the request nor a prompt names one, the model writes it.
    fields.append(("R", request.rhythm or head.get("rhythm") or None))
    fields += [
        ("M", request.meter or head.get("meter") or None),
        ("L", head.get("unit") or "1/8"),
        ("K", key or head.get("key") or None),
    ]
    return ABCPlan(fields, body)


# ------------------------------------------------------------------------------------------- abc


# The characters of the folk corpus's tune bodies, less chord symbols and text annotations ("..."),
# whose free text is where a weak model most often writes what abc2midi cannot read.
BODY_CHARS = set("ABCDEFGabcdefgzxZ0123456789|:/(){},'=^_<>.~T]\\\n")  # no ties: abc2midi wants equal pitches
_MODES = ("", "m", "min", "maj", "mix", "dor", "phr", "lyd", "loc", "aeo", "ion", "Mix", "Dor", "Min", "Maj")
# The values abc2midi reads for the fields a model may fill in itself; anything else is masked.
FIELD_VALUES = {
    "M": {f"{n}/{d}" for n in range(1, 13) for d in (1, 2, 4, 8, 16)} | {"C", "C|", "none"},
    "L": {f"1/{d}" for d in (1, 2, 4, 8, 16, 32)},
    "K": {f"{t}{a}{m}" for t in "ABCDEFG" for a in ("", "#", "b") for m in _MODES} | {"none"},
}
_VALUE_CHARS = {c for vs in FIELD_VALUES.values() for v in vs for c in v}
_FIELD_PREFIXES = {k: {v[:i] for v in vs for i in range(len(v) + 1)} for k, vs in FIELD_VALUES.items()}


class ABCHeader:
    """Spaceless ABC with a complete header: X:, T:, (R:,) M:, L:, K: in that order, then the body.

    `fields` is a list of (letter, value or None): a value is forced whole ("M:6/8\\n"), None forces the
    letter ("M:") and lets the model write the value up to its newline. Tokens never cross a newline in
    the ABC tokenizer (`orchestrion.abc.dataset.make_tokenizer`), so a field ends with the token that ends in "\\n".
    End of tune (`eos_id`) is allowed only once the body holds a bar line; `bos_id` never comes back.
    """

    def __init__(
        self,
        tokenizer: object,
        batch_size: int,
        fields: list[tuple[str, str | None]],
        eos_id: int,
        bos_id: int | None = None,
        body_prefix: str = "",
        max_field_tokens: int = 16,
        max_tokens: int | None = None,
    ):
        self.tokenizer, self.eos_id, self.bos_id = tokenizer, eos_id, bos_id
        size = tokenizer.get_vocab_size()
        self.text = [tokenizer.decode([i], skip_special_tokens=False) for i in range(size)]
        self.newline = torch.tensor([t.endswith("\n") for t in self.text])
        # Free values of M:, L: and K: may only use the characters such values are made of.
        # Tokens that could be part of a field value (no newline inside), by their text without "\n".
        self.value_tokens = [
            (i, t.rstrip("\n"), t.endswith("\n"))
            for i, t in enumerate(self.text)
            if "\n" not in t.rstrip("\n") and set(t.rstrip("\n")) <= _VALUE_CHARS
        ]
        vocab = tokenizer.get_vocab()
        self.never = [i for t, i in vocab.items() if t in ("<pad>", "<unk>", "<s>") or i == bos_id]
        self.body_ok = torch.tensor([set(t) <= BODY_CHARS for t in self.text])
        self.body_ok[eos_id] = True
        self.fields = fields
        self.max_field_tokens = max_field_tokens  # a free field value then has to end (no endless title)
        self.body_prefix = body_prefix
        self.rows = [
            {"field": -1, "forced": [], "free": False, "body": "", "in_body": False} for _ in range(batch_size)
        ]
        self.seen = 0
        self.prompt_done = False
        self.max_tokens = max_tokens  # near it, a tune is steered to a place where it may end, then ended
        self.steps = 0

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def _next_field(self, row: dict) -> None:
        row["field"] += 1
        if row["field"] < len(self.fields):
            letter, value = self.fields[row["field"]]
            text = f"{letter}:{value}\n" if value is not None else f"{letter}:"
            row["forced"], row["free"], row["used"], row["value"] = self.encode(text), value is None, 0, ""
        else:
            row["in_body"], row["free"] = True, False
            row["forced"] = self.encode(self.body_prefix) if self.body_prefix else []
            row["body"] = self.body_prefix
            row["syntax"] = abc_feed(ABC_START, self.body_prefix)  # None: a prompt the automaton cannot
            # follow, then the body is left to the model and abc2midi's check

    def start(self) -> None:
        """Begin every row at the first field (the prompt is just BOS)."""
        for row in self.rows:
            self._next_field(row)

    def _advance(self, row: dict, token: int) -> None:
        if row["forced"]:
            if token == row["forced"][0]:
                row["forced"].pop(0)
            else:
                row["forced"] = []
            if not row["in_body"] and not row["forced"] and not row["free"]:
                self._next_field(row)
            return
        if row["in_body"]:
            row["body"] += self.text[token]
            if row.get("syntax") is not None and token != self.eos_id:
                row["syntax"] = abc_feed(row["syntax"], self.text[token])
        elif row["free"]:
            row["used"] += 1
            row["value"] += self.text[token]
            if self.text[token].endswith("\n"):
                self._next_field(row)

    def _syntax_mask(self, state: tuple, scores: torch.Tensor, first: int = 64, ending: bool = False) -> torch.Tensor:
        """Ban every token that would break the body's syntax; checks the likeliest `first` tokens (all of
        them only when none of those fits), which keeps a step cheap. `ending`: the token budget is nearly
        spent, so end the tune where it may end, and until then prefer tokens after which it may."""
        if ending and abc_can_end(state):
            banned = torch.ones_like(scores, dtype=torch.bool)
            banned[self.eos_id] = False
            return banned
        finite = int(torch.isfinite(scores).sum())
        for k in (min(first, finite), finite):
            good = []
            for i in torch.topk(scores, k).indices.tolist():
                if i == self.eos_id:
                    ok = abc_can_end(state)
                else:
                    ok = abc_feed(state, self.text[i]) is not None
                if ok:
                    good.append(i)
            if good:
                break
        if ending:
            closing = [i for i in good if i != self.eos_id and abc_can_end(abc_feed(state, self.text[i]))]
            good = closing or [i for i in good if set(self.text[i]) & set("|)}:")] or good
        banned = torch.ones_like(scores, dtype=torch.bool)
        banned[good or [self.eos_id]] = False
        return banned

    def _value_continuations(self, letter: str, so_far: str) -> list[int]:
        prefixes, values = _FIELD_PREFIXES[letter], FIELD_VALUES[letter]
        return [
            i
            for i, text, ends in self.value_tokens
            if ((so_far + text in values) if ends else (text and so_far + text in prefixes))
        ]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        new = input_ids[:, self.seen :].tolist()
        if not self.prompt_done:  # the prompt (BOS) is not part of any field
            new = [[] for _ in new]
            self.prompt_done = True
        self.seen = input_ids.shape[1]
        self.steps += 1
        mask = torch.zeros(scores.shape, dtype=torch.bool)  # True = banned
        for r, (row, tokens) in enumerate(zip(self.rows, new, strict=True)):
            for token in tokens:
                self._advance(row, token)
            if row["forced"]:
                mask[r] = True
                mask[r, row["forced"][0]] = False
                continue
            mask[r, self.never] = True
            if row["in_body"]:
                mask[r] |= ~self.body_ok
            if not row["in_body"] or "|" not in row["body"]:
                mask[r, self.eos_id] = True
            if row["in_body"] and row.get("syntax") is not None:
                ending = self.max_tokens is not None and self.max_tokens - self.steps <= 32
                mask[r] = self._syntax_mask(row["syntax"], scores[r].masked_fill(mask[r], NEG_INF), ending=ending)
            if row["free"]:
                letter = self.fields[row["field"]][0]
                if letter in FIELD_VALUES:  # a token that keeps the value a prefix of a known one
                    mask[r] = True
                    mask[r, self._value_continuations(letter, row["value"])] = False
                if row["used"] >= self.max_field_tokens:
                    mask[r] |= ~self.newline
        return scores.masked_fill(mask.to(scores.device), NEG_INF)


# ------------------------------------------------------------------------------------- abc body syntax

_LEN = __import__("re").compile(r"[1-9]\d?(/[1-9]?)?|/[1-9]?|//")
_NOTE_LIKE = ("note", "rest", "closed")


def abc_step(state: tuple, c: str) -> tuple | None:
    """One character of a spaceless ABC body through a small syntax automaton; None where abc2midi would
    stumble. state = (kind, length, need, slur, grace, bars, accidentals, repeat_open, tuplet_left,
    in_tuplet): the last two count the notes a tuplet still takes, since abc2midi refuses nested tuplets
    and broken rhythms (A>B) that touch one."""
    tup, intup = state[8], state[9]
    if c in "23456789" and state[0] == "open" and tup:
        return None
    if c in "<>" and intup:
        return None
    nxt = _abc_step(state[:8], c)
    if nxt is None:
        return None
    if nxt[0] == "tuplet" and state[0] == "open":
        return (*nxt, int(c), False)
    if (
        nxt[0] in ("note", "rest")
        and state[0] not in ("note", "rest")
        or (nxt[0] in ("note", "rest") and nxt[1] == "" and c not in ",'")
    ):
        # a new note or rest begins
        return (*nxt, max(tup - 1, 0), tup > 0)
    return (*nxt, tup, intup)


def _abc_step(state: tuple, c: str) -> tuple | None:
    """`abc_step` without the tuplet bookkeeping."""
    kind, length, need, slur, grace, bars, acc, rep = state
    if kind == "note" and need is not None and not (c.isdigit() or c == "/"):
        if length != need:  # a broken rhythm (A>B) needs two notes of the same length
            return None
        need = None
    if c.isdigit() or c == "/":
        if kind in ("note", "rest") and (need is None or need.startswith(length + c)) and _LEN.fullmatch(length + c):
            return (kind, length + c, need, slur, grace, bars, 0, rep)
        if kind == "open" and c in "23456789":  # (3: a tuplet, not a slur
            return ("tuplet", "", need, slur - 1, grace, bars, 0, rep)
        return None  # (variant endings |1 |2 need repeat bookkeeping abc2midi is strict about: left out)
    if c in "ABCDEFGabcdefg":
        if kind == "colon" or (kind == "broken" and grace):
            return None
        return ("note", "", need if kind == "broken" else None, slur, grace, bars, 0, rep)
    if c in ",'":
        return state if kind == "note" and length == "" else None
    if c in "zxZ":
        if grace or kind in ("acc", "deco", "colon", "tuplet", "broken"):
            return None
        return ("rest", "", need if kind == "broken" else None, slur, grace, bars, 0, rep)
    if c in "^_=":
        if kind == "colon" or acc >= (1 if c == "=" else 2):
            return None
        return ("acc", "", need if kind == "broken" else None, slur, grace, bars, acc + 1, rep)
    if c in "<>":
        if kind != "note" or grace or length not in ("", "2"):
            return None
        return ("broken", "", length, slur, grace, bars, 0, rep)
    if c == "(" and kind == "tuplet":
        return None if slur else ("open", "", None, slur + 1, grace, bars, 0, rep)  # (3(AB): a slurred triplet
    if kind in ("acc", "deco", "broken", "tuplet") or (kind == "colon" and c not in "|:"):
        return None  # these need a note (or a bar line) next
    if c == "(":  # slurs do not nest here (a weak model opens more than it closes)
        return None if grace or slur else ("open", "", None, slur + 1, grace, bars, 0, rep)
    if c == ")":
        return ("closed", "", None, slur - 1, grace, bars, 0, rep) if slur > 0 and kind in _NOTE_LIKE else None
    if c == "{":
        return None if grace else ("start", "", None, slur, True, bars, 0, rep)
    if c == "}":
        return ("grace_done", "", None, slur, False, bars, 0, rep) if grace and kind == "note" else None
    if c in ".~T" and not grace and kind != "grace_done":
        return ("deco", "", None, slur, grace, bars, 0, rep)
    if grace or kind in ("open", "grace_done"):
        return None
    if c == "|":
        return ("bar", "", None, slur, grace, bars + 1, 0, rep)
    if c == "]":
        return ("bar", "", None, slur, grace, bars, 0, rep) if kind == "bar" else None  # |]
    if c == ":":
        if kind == "bar":  # |: a repeat starts (abc2midi refuses a second one before its :|)
            return None if rep else ("bar", "", None, slur, grace, bars, 0, True)
        if kind == "colon":  # :: ends a repeat and starts the next
            return ("bar", "", None, slur, grace, bars + 1, 0, True)
        return ("colon", "", None, slur, grace, bars, 0, False) if kind in _NOTE_LIKE else None
    if c == "\\":
        return ("cont", "", None, slur, grace, bars, 0, rep)
    if c == "\n":
        return ("start", "", None, slur, grace, bars, 0, rep)
    return None


ABC_START = ("start", "", None, 0, False, 0, 0, False, 0, False)


def abc_can_end(state: tuple) -> bool:
    kind, length, need, slur, grace, bars, acc, rep = state[:8]
    if kind == "note" and need is not None and length != need:
        return False
    return bars > 0 and slur == 0 and not grace and not rep and kind in ("note", "rest", "closed", "bar", "start")


def abc_feed(state: tuple | None, text: str) -> tuple | None:
    for c in text:
        if state is None:
            return None
        state = abc_step(state, c)
    return state
