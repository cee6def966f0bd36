"""Tokens that remember when they were spoken, sentences over them, and a small stemmer.

Every feature must point back to the recording, so tokenisation never loses a word's time:
each :class:`Token` keeps the text as Whisper wrote it (for quotes) next to a normalised form
(for matching) and its start and end in seconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from poise_common.signals import TranscriptSegment

# A silence this long ends a sentence even without punctuation, so that an unpunctuated
# transcript is not one sentence; Whisper nearly always punctuates across such a gap anyway.
LONG_PAUSE_S = 2.0

# Typographic apostrophes would otherwise split "I’m" from "I'm" in every word list.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_NON_WORD = re.compile(r"[^\w']+|_")
# Sentence-final punctuation, possibly inside a closing quote or bracket ("done.\"").
_TERMINAL = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*$")
# Abbreviations whose period does not end a sentence. "etc." is left out on purpose: in speech it
# nearly always closes the sentence.
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "vs.", "e.g.", "i.e.", "approx.", "jr.", "sr."}
)


@dataclass(frozen=True, slots=True)
class Token:
    """One spoken word."""

    norm: str
    """Lowercase, without punctuation; inner apostrophes kept ("i'm", "don't")."""
    text: str
    """The word as transcribed, stripped of surrounding whitespace (punctuation kept)."""
    start_s: float
    end_s: float
    terminal: bool = False
    """Sentence-final punctuation follows the word."""


@dataclass(frozen=True, slots=True)
class Sentence:
    """A half-open span ``[start, end)`` of token indices."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def normalise(word: str) -> str:
    """Lowercase ``word`` and drop everything but letters, digits and inner apostrophes."""
    return _NON_WORD.sub("", word.translate(_APOSTROPHES).lower()).strip("'")


def _is_terminal(text: str) -> bool:
    if not _TERMINAL.search(text):
        return False
    return text.rstrip("\"'\u201d\u2019)]").lower() not in _ABBREVIATIONS


def _spread(text: str, start_s: float, end_s: float) -> list[tuple[str, float, float]]:
    """Split ``text`` on whitespace and share ``[start_s, end_s]`` evenly among the pieces.

    Used for segments without word timings, and for the rare Whisper "word" that holds more
    than one word; an even share is the best guess without an aligner.
    """
    pieces = text.split()
    if not pieces:
        return []
    end_s = max(end_s, start_s)  # Whisper occasionally emits a word that ends before it starts.
    step = (end_s - start_s) / len(pieces)
    return [(p, start_s + i * step, start_s + (i + 1) * step) for i, p in enumerate(pieces)]


def tokenise(segments: Sequence[TranscriptSegment]) -> list[Token]:
    """Turn transcript segments into timed tokens, in time order.

    Word timings are used when a segment has them; otherwise the segment's text is spread
    evenly over its time. Pieces that are only punctuation (" -", "...") are not words: they
    are dropped, but a sentence-final one still closes the sentence of the word before it.
    """
    tokens: list[Token] = []
    for segment in sorted(segments, key=lambda s: s.start_s):
        if segment.words:
            spans = [p for w in segment.words for p in _spread(w.word, w.start_s, w.end_s)]
        else:
            spans = _spread(segment.text, segment.start_s, segment.end_s)
        for text, start_s, end_s in spans:
            norm = normalise(text)
            terminal = _is_terminal(text)
            if norm:
                tokens.append(Token(norm, text, start_s, end_s, terminal))
            elif terminal and tokens:
                tokens[-1] = replace(tokens[-1], terminal=True)
    return tokens


def split_sentences(tokens: Sequence[Token], pause_s: float = LONG_PAUSE_S) -> list[Sentence]:
    """Split ``tokens`` into sentences.

    A sentence ends at sentence-final punctuation (not after a known abbreviation), at a
    silence of at least ``pause_s`` seconds, and at the last token. Splitting at token ends is
    the same as splitting the joined text, because a sentence boundary never falls inside a word,
    and it keeps the mapping back to times trivial.
    """
    sentences: list[Sentence] = []
    start = 0
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        if last or token.terminal or tokens[i + 1].start_s - token.end_s >= pause_s:
            sentences.append(Sentence(start, i + 1))
            start = i + 1
    return sentences


def span_text(tokens: Sequence[Token], start: int, end: int) -> str:
    """The words of ``tokens[start:end]`` exactly as transcribed, joined by single spaces."""
    return " ".join(t.text for t in tokens[start:end]).strip()


# --- Stemmer ---------------------------------------------------------------------------------------

_VOWELS = frozenset("aeiouy")
_PLURAL_ES = ("ches", "shes", "xes", "zes", "sses")
# One inflectional or derivational suffix is removed, longest first. The replacement keeps the
# stems of related forms equal ("organization" -> "organize" -> "organiz" = "organizing").
_SUFFIXES: tuple[tuple[str, str, int], ...] = (
    # (suffix, replacement, shortest stem allowed)
    ("ization", "ize", 3),
    ("isation", "ize", 3),
    ("ation", "ate", 3),
    ("ingly", "", 3),
    ("edly", "", 3),
    ("ness", "", 3),
    ("ment", "", 4),  # "comment", "moment", "payment" keep theirs
    ("ing", "", 3),
    ("ied", "y", 2),
    ("ful", "", 3),
    ("ed", "", 3),
    ("ly", "", 4),  # "only", "early", "reply" keep theirs
)


def _stem_ok(stem: str, shortest: int) -> bool:
    return len(stem) >= shortest and any(c in _VOWELS for c in stem)


def _strip_plural(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(_PLURAL_ES):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and _stem_ok(word[:-1], 3):
        return word[:-1]
    return word


def _strip_suffix(word: str) -> str:
    for suffix, replacement, shortest in _SUFFIXES:
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            if _stem_ok(stem, shortest):
                return stem + replacement
            return word
    return word


def _tidy(word: str) -> str:
    # Undo the spelling changes English makes before a suffix, so both sides meet:
    # "running"/"run", "managing"/"manage", "happily"/"happy".
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in _VOWELS and word[-1] not in "lsz":
        return word[:-1]
    if len(word) > 3 and word.endswith("e"):
        # All of them: "agree" and "agreed" both end up "agr".
        while len(word) > 3 and word.endswith("e"):
            word = word[:-1]
        return word
    if len(word) > 2 and word.endswith("i"):
        return word[:-1] + "y"
    return word


def stem(word: str) -> str:
    """Reduce a normalised word to a crude stem for matching related forms.

    Deliberately small (a plural step, one suffix, a spelling tidy-up) rather than Porter: the
    stems are only compared with each other, so consistency across a word's common forms
    ("team"/"teams", "manage"/"managed"/"managing"/"management") matters, not linguistic accuracy.
    Words of three letters or fewer are returned unchanged.
    """
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    word = word.strip("'")
    if len(word) <= 3:
        return word
    return _tidy(_strip_suffix(_strip_plural(word)))
