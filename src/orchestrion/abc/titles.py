"""Titles made of real words: the title vocabulary of the folk corpus, and a check a decoder runs per token.

    vocabulary = title_vocabulary()            # the word forms of the corpus's dance-tune titles
    title_prefix_ok("The Humours of Bal", vocabulary)              True: every word real, the last one begun
    title_prefix_ok("The Humours of Bal", vocabulary, final=True)  False: "Bal" is not a word

Words are read as `orchestrion.evaluation.abc_metrics.title_ok` reads them (letters and inner apostrophes; a
possessive 's is the word's), so a title this check lets through passes `title_ok`. The vocabulary is the
titles of the English-language collections of the built-in corpus (O'Neill's 1850, Ryan's Mammoth), in the
forms they are written there ("The", "of", "O'Neill's", "McGrath") and capitalised (a title starts with a
capital); only words found in two titles at least (which leaves out typos and fragments such as
"Gladiat:or"), no words of one or two letters but common ones ("of", "my"), nor words in capitals. A title does not end
on a word such as "of" or "the".
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")  # as orchestrion.evaluation.abc_metrics reads title words
_WHOLE_WORD = re.compile(r"(?<![\w'])[^\W\d_]+(?:'[^\W\d_]+)*(?![\w])")  # not the `st` of `1st`
SHORT_WORDS = frozenset("a i o an as at be by do go he if in is it me my no of oh on or so to up us we".split())
TITLE_SOURCES = ("oneills1850", "ryansMammoth")
MAX_WORDS = 8
MAX_CHARS = 60
NOT_LAST = frozenset("a an and at by de for from in is my o of on or the to with".split())


@dataclass(frozen=True)
class TitleVocabulary:
    forms: frozenset[str]  # word forms a title may use
    prefixes: frozenset[str]  # every prefix of those forms
    titles: tuple[str, ...]  # the corpus's titles (a fallback when a tokenizer cannot spell words)


def vocabulary_of(titles: list[str], min_titles: int = 2) -> TitleVocabulary:
    """The title vocabulary of `titles`: words found in `min_titles` of them at least."""
    seen = Counter(w.lower() for title in titles for w in set(_WHOLE_WORD.findall(title)))
    forms: set[str] = set()
    for title in titles:
        for word in _WHOLE_WORD.findall(title):
            if seen[word.lower()] < min_titles or not word.isascii() or (len(word) > 1 and word.isupper()):
                continue
            if len(word) > 2 or word.lower() in SHORT_WORDS:
                forms.update((word, word[:1].upper() + word[1:]))
    prefixes = {form[:i] for form in forms for i in range(len(form) + 1)}
    return TitleVocabulary(frozenset(forms), frozenset(prefixes), tuple(titles))


@functools.lru_cache(maxsize=1)
def title_vocabulary() -> TitleVocabulary:
    """The built-in corpus's dance-tune title words, read once per process (a quarter of a second)."""
    from orchestrion.core.corpora import folk_tunes

    titles = [t["title"] for t in folk_tunes() if t["source"] in TITLE_SOURCES and t["title"]]
    return vocabulary_of(sorted(set(titles)))


def title_prefix_ok(title: str, vocabulary: TitleVocabulary, *, final: bool = False) -> bool:
    """True when `title` can begin a title of real words (`final`: when it is one, complete).

    Words are single-spaced forms of the vocabulary, at most `MAX_WORDS` of them and `MAX_CHARS` characters.
    """
    if len(title) > MAX_CHARS or title.startswith(" ") or "  " in title or (title and not title[0].isupper()):
        return False
    words = title.split(" ")
    if len(words) > MAX_WORDS or any(w not in vocabulary.forms for w in words[:-1]):
        return False
    last = words[-1]
    if final:
        return last in vocabulary.forms and last.lower() not in NOT_LAST
    return last in vocabulary.prefixes
