"""A folk-rnn-style vocabulary for spaceless ABC: one token per musical symbol.

The BPE of `abc.dataset.make_tokenizer` merges whatever character runs are frequent (`c2d`, `|:G`), so a
token mixes pitch, duration and bar lines and the model has to learn each combination separately. Here a
token is one symbol of the music, as in folk-rnn (Sturm et al. 2016):

- a note with its accidental and octave marks (`^F`, `c'`, `_B,`), a rest (`z`);
- a duration (`2`, `/2`, `3/2`, `/`);
- a bar line or repeat, with its ending number (`|`, `|:`, `:|`, `::`, `||`, `|]`, `|1`, `:|2`, `[1`);
- a broken rhythm (`>`, `<<`), a tuplet (`(3`), a slur, a chord bracket, a grace group brace, a tie;
- a quoted chord symbol or annotation (`"Am"`), a decoration (`!trill!`), an inline field (`[K:G]`), whole;
- a header field's tag (`K:`) and its value (`Dmix`, `6/8`, `1/8`, `reel`) as two tokens;
- a title word (`The`, `Reel`), and the newline.

It is a plain `tokenizers` Tokenizer: a regex `Split` pre-tokenizer whose pattern lists every multi-character
symbol seen at least `min_count` times in the training tunes (longest first), then any single character;
a `WordLevel` model over those pieces; a `Fuse` decoder (tokens are concatenated back without spaces). So
it is lossless: a symbol too rare to have its own token is spelled character by character, and only a
non-ASCII character never seen in training becomes `<unk>`. It loads with `Tokenizer.from_file` and
`PreTrainedTokenizerFast(tokenizer_file=...)`.

Header field tags and values are tied to their place with look-behinds (`^K:`, `(?<=K:)Dmix(?=\\n)`), and a
title word only gets a token if it holds a letter that cannot occur in a tune body (so `Bead` in a title is
spelled out, while `cBed` in a body is never read as a word).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

SPECIALS = ("<s>", "</s>", "<pad>", "<unk>")
ASCII = "\n" + "".join(chr(c) for c in range(32, 127))

# Letters a tune body may hold outside quotes, !decorations! and inline fields: notes, rests, spacers and
# the one-letter decorations. A title word made only of these could be mistaken for music.
_BODY_LETTERS = set("ABCDEFGabcdefgzxyZXHLMOPSTuv")
_FIELD_LINE = re.compile(r"^([A-Za-z+]):(?![|:\]])(.*)$")
# Header fields whose whole value is one token when it is common (K:Dmix, M:6/8, L:1/8, R:reel).
_VALUE_FIELDS = "KLMRXQP"

# Candidate multi-character symbols of a body line (music outside quotes and inline fields).
_BODY_SYMBOL = re.compile(
    r'"[^"\n]*"'  # chord symbol or annotation
    r"|![^!\n]*!"  # decoration
    r"|\[[A-Za-z]:[^\]\n]*\]"  # inline field
    r"|\((?:[2-9])(?::[0-9]?){0,2}"  # tuplet (3, (3:2:3
    r"|(?::+\||\|:+|::|\|\||\|\]|\[\||\|)(?:[0-9](?:[,-][0-9])*)?"  # bar lines with an ending number
    r"|\[[0-9](?:[,-][0-9])*"  # [1 [2
    r"|[_=^]{1,2}[A-Ga-g][,']*|[A-Ga-g][,']+"  # a note with accidental or octave marks
    r"|[0-9]*/+[0-9]*|[0-9]{2,}"  # a duration
    r"|>+|<+"  # broken rhythm
)
_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


def _is_field(line: str) -> re.Match | None:
    return _FIELD_LINE.match(line)


def candidate_counts(texts: Iterable[str]) -> tuple[Counter, Counter, Counter]:
    """Counts of body symbols, header (field, value) pairs and header words over the training tunes."""
    body: Counter = Counter()
    values: Counter = Counter()
    words: Counter = Counter()
    for text in texts:
        in_body = False
        for line in text.split("\n"):
            m = _is_field(line)
            if m and (not in_body or m.group(1) in "KMLPQ"):
                letter, value = m.group(1), m.group(2)
                body[f"{letter}:"] += 1
                if letter in _VALUE_FIELDS and value:
                    values[(letter, value)] += 1
                if letter not in "KLMXQ":
                    words.update(_WORD.findall(value))
                in_body = in_body or letter == "K"
            elif line.startswith("%"):
                continue
            else:
                body.update(m.group(0) for m in _BODY_SYMBOL.finditer(line))
    return body, values, words


def _alternation(pieces: Iterable[str]) -> str:
    return "|".join(re.escape(p) for p in sorted(set(pieces), key=lambda p: (-len(p), p)))


def build_pattern(texts: list[str], min_count: int = 3, min_word_count: int = 20) -> tuple[str, list[str]]:
    """The pre-tokenizer's regex and the list of multi-character pieces it can produce.

    A music symbol or a K:, M:, L: value needs `min_count` uses in `texts` to be a token, an R: value or a title
    word `min_word_count`.
    """
    body, values, words = candidate_counts(texts)
    fields = sorted({k for k, n in body.items() if re.fullmatch(r"[A-Za-z+]:", k) and n >= min_count})
    symbols = [k for k, n in body.items() if len(k) > 1 and n >= min_count and k not in fields]
    by_field: dict[str, list[str]] = {}
    for (letter, value), n in values.items():
        if n >= (min_word_count if letter == "R" else min_count) and len(value) > 1:
            by_field.setdefault(letter, []).append(value)
    title_words = [
        w
        for w, n in words.items()
        if n >= min_word_count and len(w) > 1 and not set(w) <= _BODY_LETTERS and len(w) <= 24
    ]
    parts = []
    for letter, vals in sorted(by_field.items()):
        parts.append(f"(?<={re.escape(letter)}:)(?:{_alternation(vals)})(?=\\n|$)")
    if fields:
        parts.append(f"^(?:{_alternation(fields)})(?![|:\\]])")
    if symbols:
        parts.append(_alternation(symbols))
    if title_words:
        parts.append(f"\\b(?:{_alternation(title_words)})\\b")
    parts.append(r"[\s\S]")
    pieces = sorted(set(fields) | set(symbols) | {v for vs in by_field.values() for v in vs} | set(title_words))
    return "|".join(parts), pieces


def make_folk_tokenizer(texts: list[str], min_count: int = 3, min_word_count: int = 20):
    """The folk vocabulary tokenizer fitted on `texts` (the training tunes, spaceless, real newlines)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    pattern, _ = build_pattern(texts, min_count, min_word_count)
    split = pre_tokenizers.Split(Regex(pattern), "isolated")
    counts: Counter = Counter()
    for text in texts:
        counts.update(piece for piece, _ in split.pre_tokenize_str(text))
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for piece, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        vocab.setdefault(piece, len(vocab))
    for c in ASCII:  # any ASCII text encodes without <unk>, whatever the training tunes held
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = split
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIALS))
    return tok
