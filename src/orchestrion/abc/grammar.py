"""ABC constraints: the header-forcing processor, the body grammar at work, the ABC prompt plan.

`ABCHeader` forces the header of a spaceless ABC tune (X:, T:, R:, M:, L:, K:, values from the request or
written by the model within known ones: titles of real words, known rhythms, the meters of the rhythm) and
then runs the body through `orchestrion.abc.body.BodyGrammar` (syntax, bar lengths, form, the last note).
`abc_plan` turns a request and its prompt into an `ABCPlan`: the header fields to force, the body to start
from and the form. Like the processors in `orchestrion.core.sampling`, `ABCHeader` is a `LogitsProcessor`;
`orchestrion.abc.sampler` runs it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from orchestrion.abc import text as abccodec
from orchestrion.abc.body import Body, BodyGrammar, body_grammar
from orchestrion.abc.rhythms import rhythm_named, rhythms_for_meter
from orchestrion.abc.syntax import ABC_START, abc_can_end, abc_feed, abc_step
from orchestrion.abc.titles import TitleVocabulary, title_prefix_ok, title_vocabulary
from orchestrion.errors import BadInput, InvalidRequest

if TYPE_CHECKING:
    from orchestrion.requests import ComposeRequest

NEG_INF = float("-inf")


@dataclass
class ABCPlan:
    """What `abc_plan` makes of a request: the header fields to force and the body to start from."""

    fields: list[tuple[str, str | None]]  # (letter, value) in order; None: the model writes the value
    body: str = ""  # the prompt's first bars, spaceless ("" to start the body afresh)
    form: str | None = None  # "strains" or "free"; None: strains for a dance rhythm, else free


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
    return ABCPlan(fields, body, request.form)


# ------------------------------------------------------------------------------------------- abc

__all__ = ["ABC_START", "ABCHeader", "ABCPlan", "abc_can_end", "abc_feed", "abc_plan", "abc_step"]

# The characters of the folk corpus's tune bodies, less chord symbols and text annotations ("..."),
# whose free text is where a weak model most often writes what abc2midi cannot read, and less
# multi-measure and invisible rests (Z, X, x), which a melody has no use for.
BODY_CHARS = set("ABCDEFGabcdefgz0123456789|:/(){},'=^_<>.~T]\n")  # no ties: abc2midi wants equal pitches
_MODES = ("", "m", "min", "maj", "mix", "dor", "phr", "lyd", "loc", "aeo", "ion", "Mix", "Dor", "Min", "Maj")
# The values abc2midi reads for the fields a model may fill in itself; anything else is masked.
FIELD_VALUES = {
    "M": {f"{n}/{d}" for n in range(1, 13) for d in (1, 2, 4, 8, 16)} | {"C", "C|", "none"},
    "L": {f"1/{d}" for d in (1, 2, 4, 8, 16, 32)},
    "K": {f"{t}{a}{m}" for t in "ABCDEFG" for a in ("", "#", "b") for m in _MODES} | {"none"},
}
_TITLE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz' "
FALLBACK = {"R": "reel", "M": "4/4", "L": "1/8", "K": "C"}  # when a tokenizer cannot spell a field at all
ENDING_TOKENS = 32  # this close to the token budget, a tune is steered to a place where it may end
MAX_CHECKED = 32  # tokens checked per step once some fit (the likeliest first; 96: no better, BENCHMARKS.md)
CHUNK = 16  # ... in chunks of this many


_TEXTS: dict[int, tuple[object, tuple[str, ...]]] = {}


def token_texts(tokenizer: object) -> tuple[str, ...]:
    """The text of every token, one tuple per tokenizer (the body grammar caches its steps per vocabulary)."""
    entry = _TEXTS.get(id(tokenizer))
    if entry is None or entry[0] is not tokenizer:
        size = tokenizer.get_vocab_size()
        texts = tuple(tokenizer.decode([i], skip_special_tokens=False) for i in range(size))
        entry = _TEXTS[id(tokenizer)] = (tokenizer, texts)
    return entry[1]


@functools.lru_cache(maxsize=256)
def _prefixes(values: frozenset[str]) -> frozenset[str]:
    return frozenset(v[:i] for v in values for i in range(len(v) + 1))


class ABCHeader:
    """Spaceless ABC with a complete header: X:, T:, R:, M:, L:, K: in that order, then the body.

    `fields` is a list of (letter, value or None): a value is forced whole ("M:6/8\\n"), None lets the model
    write the line ("T:" and its value) up to its newline, within what `_line_ok` accepts: a title of real
    words (`orchestrion.abc.titles`), a known rhythm (of the meter, when M: is given), a meter of that
    rhythm, a unit or key abc2midi reads. Tokens never cross a newline in the ABC tokenizer
    (`orchestrion.abc.dataset.make_tokenizer`), so a line ends with the token that ends in "\\n". A field the
    tokenizer cannot spell at all is left out of the tokens and put into the text after sampling
    (`header_lines`). The body follows `orchestrion.abc.body.BodyGrammar` for the meter, unit and key the
    header ended with and `form` (None: strains for a dance rhythm); the end of tune (`eos_id`) comes only
    where the grammar may end; `bos_id` never comes back.
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
        form: str | None = None,
        titles: TitleVocabulary | None = None,
        seed: int = 0,
    ):
        self.tokenizer, self.eos_id, self.bos_id = tokenizer, eos_id, bos_id
        self.text = token_texts(tokenizer)
        vocab = tokenizer.get_vocab()
        self.never = [i for t, i in vocab.items() if t in ("<pad>", "<unk>", "<s>") or i == bos_id]
        specials = set(self.never) | {eos_id}
        # Tokens that may write (part of) a header line: no newline inside, at most one at the end.
        self.line_tokens = [
            (i, t.removesuffix("\n"), t.endswith("\n"))
            for i, t in enumerate(self.text)
            if t and i not in specials and "\n" not in t.removesuffix("\n")
        ]
        self.line_ends = [i for i, _, ends in self.line_tokens if ends] or [eos_id]
        self._candidates: dict[frozenset, tuple[list, torch.Tensor]] = {}
        self.body_ok = torch.tensor([bool(t) and set(t) <= BODY_CHARS for t in self.text])
        self.body_ok[list(specials)] = False
        self.fields, self.form, self.seed = fields, form, seed
        self.max_field_tokens = max_field_tokens  # a free line then has to end (no endless title)
        self.body_prefix = body_prefix
        self.titles = titles
        self.rows = [{"field": -1, "forced": [], "free": False, "values": {}, "posthoc": []} for _ in range(batch_size)]
        self.seen = 0
        self.prompt_done = False
        self.max_tokens = max_tokens  # near it, a tune is steered to a place where it may end, then ended
        self.steps = 0

    # ------------------------------------------------------------------------------------- header

    def spell(self, text: str) -> list[int] | None:
        """The tokens of `text`, or None when the tokenizer cannot write it exactly."""
        ids = list(self.tokenizer.encode(text, add_special_tokens=False).ids)
        return ids if ids and "".join(self.text[i] for i in ids) == text and not set(ids) & set(self.never) else None

    def _choices(self, row: dict, letter: str) -> frozenset[str] | None:
        """The values a free field may take (None: a title, checked word by word)."""
        if letter == "R":
            meter = next((v for k, v in self.fields if k == "M" and v), None)
            names = [r.name for r in rhythms_for_meter(meter)] or ["air"]
            return frozenset(names + [n.capitalize() for n in names])
        if letter == "M":
            rhythm = rhythm_named(row["values"].get("R"))
            return frozenset(rhythm.meters) if rhythm is not None else frozenset(FIELD_VALUES["M"])
        if letter in FIELD_VALUES:
            return frozenset(FIELD_VALUES[letter])
        return None

    def _line_ok(self, row: dict, letter: str, line: str, final: bool) -> bool:
        """Can `line` ("T:The Bo") begin (`final`: be) the line of field `letter`?"""
        head = f"{letter}:"
        if len(line) < 2:
            return not final and head.startswith(line)
        if not line.startswith(head):
            return False
        value = line[2:]
        if letter == "T":
            return title_prefix_ok(value, self.titles or title_vocabulary(), final=final)
        choices = self._choices(row, letter)
        if choices is None:
            return bool(value) or not final
        return value in choices if final else value in _prefixes(choices)

    def _fallback(self, row: dict, letter: str) -> str:
        if letter == "T":
            titles = (self.titles or title_vocabulary()).titles
            return titles[self.seed % len(titles)] if titles else "Untitled"
        choices, default = self._choices(row, letter), FALLBACK.get(letter, "")
        return default if choices is None or default in choices else sorted(choices)[0]

    def _force(self, row: dict, letter: str, value: str) -> None:
        line = f"{letter}:{value}\n"
        row["values"][letter] = value
        ids = self.spell(line)
        if ids is None:  # a vocabulary without this text (one token per musical symbol): added afterwards
            row["posthoc"].append(line)
            self._next_field(row)
        else:
            row["forced"], row["free"] = ids, False

    def _next_field(self, row: dict) -> None:
        row["field"] += 1
        if row["field"] < len(self.fields):
            letter, value = self.fields[row["field"]]
            if value is not None:
                self._force(row, letter, value)
                return
            row["forced"], row["free"], row["used"], row["line"] = [], True, 0, ""
            if not self._free_tokens(row):  # the tokenizer cannot write this field: a plausible value
                self._force(row, letter, self._fallback(row, letter))
            return
        row["in_body"], row["free"] = True, False
        row["forced"] = (self.spell(self.body_prefix) or []) if self.body_prefix else []
        row["body"] = self.body_prefix
        row["grammar"], row["state"] = self._body_grammar(row)

    def _body_grammar(self, row: dict) -> tuple[BodyGrammar | None, Body | None]:
        """The grammar of this tune's body (None where the header names a meter or unit it cannot read, or a
        prompt does not follow it: then the body is left to the model and abc2midi's check)."""
        values = row["values"]
        rhythm = rhythm_named(values.get("R"))
        form = self.form or ("strains" if rhythm is not None and rhythm.dance else "free")
        try:
            swing = rhythm is not None and rhythm.name == "hornpipe"  # abc2midi swings a hornpipe's pairs itself
            grammar = body_grammar(values.get("M") or "none", values.get("L") or "1/8", values.get("K"), form, swing)
        except BadInput:
            return None, None
        state = grammar.start(self.body_prefix)
        return (grammar, state) if state is not None else (None, None)

    def start(self) -> None:
        """Begin every row at the first field (the prompt is just BOS)."""
        for row in self.rows:
            self._next_field(row)

    def _advance(self, row: dict, token: int) -> None:
        if token == self.eos_id:
            row["done"] = True
            return
        if row["forced"]:
            if token == row["forced"][0]:
                row["forced"].pop(0)
            else:
                row["forced"] = []
            if not row.get("in_body") and not row["forced"] and not row["free"]:
                self._next_field(row)
            return
        if row.get("in_body"):
            row["body"] += self.text[token]
            if row["state"] is not None:
                row["state"] = row["grammar"].advance(row["state"], token, self.text)
        elif row["free"]:
            row["used"] += 1
            row["line"] += self.text[token]
            if self.text[token].endswith("\n"):
                letter = self.fields[row["field"]][0]
                row["values"][letter] = row["line"][2:].removesuffix("\n")
                self._next_field(row)

    def _free_tokens(self, row: dict, scores: torch.Tensor | None = None) -> list[int]:
        """The tokens that may come next in a free header line, the likeliest by `scores` first, until
        `MAX_CHECKED` have been checked and some fit (each is a check of the line so far); without `scores`,
        the first that fits (can the field be written at all?)."""
        letter = self.fields[row["field"]][0]
        line, spent = row["line"], row["used"] >= self.max_field_tokens
        candidates, ids = self._line_candidates(row, letter)
        if scores is not None and len(candidates) > MAX_CHECKED:
            order = torch.argsort(scores[ids], descending=True, stable=True).tolist()
            candidates = [candidates[k] for k in order]
        good = []
        for checked, (i, text, ends) in enumerate(candidates):
            if good and (scores is None or checked >= MAX_CHECKED):
                break
            if spent and not ends and (letter != "T" or " " in text):
                continue  # the line has to come to its end: finish the word, then the line
            if self._line_ok(row, letter, line + text, ends):
                good.append(i)
        return good

    def _line_candidates(self, row: dict, letter: str) -> tuple[list[tuple[int, str, bool]], torch.Tensor]:
        """The line tokens made only of characters the field's line can hold (the rest never fit), and their ids."""
        choices = self._choices(row, letter)
        chars = frozenset(f"{letter}:" + ("".join(choices) if choices is not None else _TITLE_CHARS))
        found = self._candidates.get(chars)
        if found is None:
            tokens = [t for t in self.line_tokens if set(t[1]) <= chars]
            found = self._candidates[chars] = (tokens, torch.tensor([t[0] for t in tokens], dtype=torch.long))
        return found

    def complete(self, r: int) -> bool:
        """Did row `r` follow its body grammar to an end (not cut by the budget, never stuck)?"""
        row = self.rows[r]
        if not row.get("in_body") or row.get("stuck"):
            return False
        return row["state"] is None or row["grammar"].can_end(row["state"])

    def tune_text(self, r: int, text: str) -> str:
        """Row `r`'s tune: the sampled `text` with the header lines the tokenizer could not spell put back in
        their places (X:, T:, R:, M:, L:, K: order)."""
        posthoc = self.rows[r]["posthoc"]
        if not posthoc:
            return text
        lines = text.split("\n")
        k = next((i for i, line in enumerate(lines) if line.startswith("K:")), len(lines) - 1)
        order = {letter: i for i, (letter, _) in enumerate(self.fields)}
        head = sorted(lines[: k + 1] + [line.rstrip("\n") for line in posthoc], key=lambda ln: order.get(ln[:1], 99))
        return "\n".join(head + lines[k + 1 :])

    # --------------------------------------------------------------------------------------- body

    def _body_mask(self, row: dict, scores: torch.Tensor) -> torch.Tensor:
        """Ban every token the body grammar does not allow next (True = banned).

        Tokens are checked in order of their score, until the allowed ones hold 98% of the probability that
        is left to find, or `MAX_CHECKED` tokens have been checked and some fit (each check is a few
        characters through the grammar, cached per state): the mask is exact where it matters and a step
        stays cheap. Near the token budget (`ending`) the tune is
        steered to a place where it may end, and ended there.
        """
        grammar, state = row["grammar"], row["state"]
        left = None if self.max_tokens is None else self.max_tokens - self.steps
        ending = (left is not None and left <= ENDING_TOKENS) or grammar.long_enough(state)
        banned = torch.ones_like(scores, dtype=torch.bool)
        spent = left is not None and left <= ENDING_TOKENS // 4
        if ending and (grammar.can_end(state) or (spent and grammar.can_end(state, True))):
            banned[self.eos_id] = False
            return banned
        probs = torch.softmax(scores.float(), -1)
        finite = int(torch.isfinite(scores).sum())
        order = torch.argsort(scores, descending=True)[:finite].tolist()
        mass = probs[order].tolist()
        after = grammar.successors(state, self.text)
        good: list[int] = []
        found, left, at = 0.0, sum(mass), 0
        while at < len(order):
            for i, p in zip(order[at : at + CHUNK], mass[at : at + CHUNK], strict=True):
                left -= p
                if grammar.can_end(state) if i == self.eos_id else after(i) is not None:
                    good.append(i)
                    found += p
            at += CHUNK
            if good and (left <= 0.02 * found or at >= MAX_CHECKED):
                break
        if ending and good:  # the tokens that bring the tune nearest an end (`BodyGrammar.to_end`)
            far = {i: 0 if i == self.eos_id else grammar.to_end(after(i)) for i in good}
            nearest = min(far.values())
            good = [i for i in good if far[i] == nearest]
        if not good:
            row["stuck"] = True  # nothing fits: end the tune here (it is sampled again if abc2midi refuses it)
        banned[good or [self.eos_id]] = False
        return banned

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
            if row.get("done"):  # this row has ended: its tokens are not used
                mask[r] = True
                mask[r, self.eos_id] = False
                continue
            if row["forced"]:
                mask[r] = True
                mask[r, row["forced"][0]] = False
                continue
            if row.get("in_body"):
                mask[r] = ~self.body_ok
                mask[r, self.eos_id] = "|" not in row["body"]
                if row["state"] is not None:
                    mask[r] = self._body_mask(row, scores[r].masked_fill(mask[r], NEG_INF))
            elif row["free"]:
                mask[r] = True
                allowed = self._free_tokens(row, scores[r]) or self.line_ends  # (a dead end: end the line as it is)
                mask[r, allowed] = False
        return scores.masked_fill(mask.to(scores.device), NEG_INF)
