"""Content features of one answer, each backed by quotes of what was said.

:func:`analyse_transcript` turns the transcript of one answer into :class:`NlpSignals`. Every
count comes with up to a few :class:`Quote` items: the sentence (or, for a long sentence, the
stretch of it around the cue) exactly as transcribed, with the time it was spoken, so that a
reviewer can check each number against the recording.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from poise_common.signals import NlpSignals, Quote, TranscriptSegment

from poise_nlp import lexicon
from poise_nlp.tokens import Sentence, Token, normalise, span_text, split_sentences, stem, tokenise

MAX_QUOTES_PER_FEATURE = 3
# Longer sentences (usually an unpunctuated run) are quoted only around the cue, so that a quote
# stays readable; the window is still a contiguous run of the words spoken.
MAX_QUOTE_WORDS = 40
QUOTE_CONTEXT_WORDS = 12
MATTR_WINDOW = 50
MIN_WORDS_FOR_DIVERSITY = 10

# Quote.feature values, in the order the quotes are listed.
FILLERS = "fillers"
HEDGES = "hedges"
PERSPECTIVE_TAKING = "perspective_taking"
QUESTION_REFERENCE = "question_reference"
WE = "we"
STAR_FEATURES: Mapping[str, str] = {part: f"star_{part}" for part in lexicon.STAR_PARTS}
QUOTE_FEATURES: tuple[str, ...] = (
    FILLERS,
    HEDGES,
    PERSPECTIVE_TAKING,
    QUESTION_REFERENCE,
    *STAR_FEATURES.values(),
    WE,
)

_RELEVANCE_STOPWORDS = lexicon.STOPWORDS | lexicon.QUESTION_FRAME_WORDS
_HAS_LETTER = re.compile(r"[^\W\d_]")
# Contractions that put a verb or a modal before "like" ("it's like", "I'd like", "don't like").
_LIKE_VERB_CONTRACTIONS = ("'s", "'m", "'re", "'d", "n't")
_KIND_OF = {("kind", "of"), ("sort", "of")}

Phrase = tuple[str, ...]
# accept(start, end, phrase) decides whether a match found in a sentence is the intended use.
Accept = Callable[[int, int, Phrase], bool]


class _Hit(NamedTuple):
    """A cue: tokens ``[start, end)`` inside sentence number ``sentence``."""

    sentence: int
    start: int
    end: int


class _PhraseMatcher:
    """Leftmost-longest, non-overlapping search for word sequences."""

    __slots__ = ("_by_first",)

    def __init__(self, phrases: Iterable[Phrase]) -> None:
        by_first: dict[str, list[Phrase]] = {}
        # Longest first, so "how they felt" wins over "they felt" at the same position.
        for phrase in sorted(dict.fromkeys(phrases), key=len, reverse=True):
            by_first.setdefault(phrase[0], []).append(phrase)
        self._by_first = {k: tuple(v) for k, v in by_first.items()}

    def find(self, keys: Sequence[str], lo: int, hi: int, accept: Accept | None = None) -> Iterator[tuple[int, int]]:
        """Yield ``(start, end)`` of each match within ``keys[lo:hi]``."""
        i = lo
        while i < hi:
            for phrase in self._by_first.get(keys[i], ()):
                j = i + len(phrase)
                if j <= hi and tuple(keys[i:j]) == phrase and (accept is None or accept(i, j, phrase)):
                    yield i, j
                    i = j
                    break
            else:
                i += 1


@dataclass(frozen=True, slots=True)
class _Matchers:
    fillers: _PhraseMatcher
    hedges: _PhraseMatcher
    perspective: _PhraseMatcher
    star: Mapping[str, _PhraseMatcher]


def _exact(phrases: Iterable[str]) -> list[Phrase]:
    return [tuple(normalise(w) for w in p.split()) for p in phrases]


def _stemmed(phrases: Iterable[str]) -> list[Phrase]:
    return [tuple(stem(normalise(w)) for w in p.split()) for p in phrases]


@functools.cache
def _matchers() -> _Matchers:
    # Built on first use rather than at import (STYLE.md: no work at import time).
    return _Matchers(
        fillers=_PhraseMatcher(_exact(lexicon.LEXICAL_FILLERS)),
        hedges=_PhraseMatcher(_exact(lexicon.HEDGES)),
        perspective=_PhraseMatcher(_stemmed(lexicon.PERSPECTIVE_TAKING)),
        star={part: _PhraseMatcher(_stemmed(lexicon.STAR_CUES[part])) for part in lexicon.STAR_PARTS},
    )


@functools.cache
def _sentiment_analyzer():  # noqa: ANN202 - vaderSentiment has no type hints
    # Imported and built lazily: the analyser reads its lexicon files when constructed.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


# --- Context rules ---------------------------------------------------------------------------------


def is_filled_pause(norm: str) -> bool:
    """Whether a normalised word is a filled pause ("um", "uhh", "hmmm")."""
    return norm in lexicon.FILLED_PAUSES or lexicon.FILLED_PAUSE_PATTERN.fullmatch(norm) is not None


def _like_is_filler(tokens: Sequence[Token], lo: int, hi: int, i: int) -> bool:
    prev = tokens[i - 1] if i > lo else None
    # Set off by commas ("it was, like, hard") is how Whisper punctuates the discourse marker.
    if tokens[i].text.endswith(",") or (prev is not None and prev.text.endswith(",")):
        return True
    if prev is None:
        return False  # Sentence-initial "Like I said" is a conjunction.
    if i + 1 < hi and tokens[i + 1].norm == "to":
        return False  # "I'd really like to": the verb.
    return not (prev.norm in lexicon.LIKE_NON_FILLER_PRECEDERS or prev.norm.endswith(_LIKE_VERB_CONTRACTIONS))


def _filler_in_context(tokens: Sequence[Token], lo: int, hi: int, i: int, phrase: Phrase) -> bool:
    prev = tokens[i - 1].norm if i > lo else None
    if phrase == ("like",):
        return _like_is_filler(tokens, lo, hi, i)
    if phrase == ("you", "know"):
        return prev not in lexicon.YOU_KNOW_NON_FILLER_PRECEDERS
    if phrase == ("i", "mean"):
        return prev not in lexicon.I_MEAN_NON_FILLER_PRECEDERS
    if phrase in _KIND_OF:
        return prev not in lexicon.KIND_OF_NOUN_PRECEDERS
    return True


def _hedge_in_context(tokens: Sequence[Token], lo: int, i: int, phrase: Phrase) -> bool:
    if phrase in _KIND_OF:
        return i == lo or tokens[i - 1].norm not in lexicon.KIND_OF_NOUN_PRECEDERS
    return True


def _is_country_us(token: Token) -> bool:
    # "the US" / "the U.S." normalise to "us" but are not the pronoun.
    return token.norm == "us" and re.sub(r"[^A-Za-z]", "", token.text) == "US"


# --- Measures --------------------------------------------------------------------------------------


def _per_100(count: int, words: int) -> float | None:
    return None if words == 0 else 100.0 * count / words


def _mattr(words: Sequence[str], window: int = MATTR_WINDOW) -> float | None:
    """Moving-average type-token ratio (Covington & McFall 2010).

    Plain TTR depends on length; averaging it over every window of ``window`` words does not, so
    short and long answers compare. Texts shorter than the window get plain TTR.
    """
    n = len(words)
    if n < MIN_WORDS_FOR_DIVERSITY:
        return None
    if n <= window:
        return len(set(words)) / n
    counts = Counter(words[:window])
    total = len(counts)
    for k in range(window, n):
        counts[words[k]] += 1
        old = words[k - window]
        counts[old] -= 1
        if counts[old] == 0:
            del counts[old]
        total += len(counts)
    return total / ((n - window + 1) * window)


def _is_content(norm: str) -> bool:
    return norm not in _RELEVANCE_STOPWORDS and _HAS_LETTER.search(norm) is not None and not is_filled_pause(norm)


def _content_stems(norms: Iterable[str]) -> list[str]:
    return [stem(n) for n in norms if _is_content(n)]


def _cosine(a: Sequence[str], b: Sequence[str]) -> float:
    """Cosine of sublinear term-frequency vectors (1 + ln tf), so one repeated word cannot dominate."""
    va = {t: 1.0 + math.log(c) for t, c in Counter(a).items()}
    vb = {t: 1.0 + math.log(c) for t, c in Counter(b).items()}
    dot = sum(w * vb.get(t, 0.0) for t, w in va.items())
    norm = math.sqrt(sum(w * w for w in va.values())) * math.sqrt(sum(w * w for w in vb.values()))
    return 0.0 if norm == 0 else min(1.0, dot / norm)


def _sentiment(tokens: Sequence[Token], sentences: Sequence[Sentence], skip: set[int]) -> float | None:
    """Mean VADER compound over sentences, without the words counted as fillers.

    VADER scores "like" as positive, so a filler "like" would read as warmth.
    """
    analyzer = _sentiment_analyzer()
    scores = []
    for s in sentences:
        text = " ".join(tokens[i].text for i in range(s.start, s.end) if i not in skip)
        if text:
            scores.append(analyzer.polarity_scores(text)["compound"])
    return sum(scores) / len(scores) if scores else None


# --- Quotes ----------------------------------------------------------------------------------------


def _quotes(
    feature: str, hits: Iterable[_Hit], tokens: Sequence[Token], sentences: Sequence[Sentence], limit: int
) -> list[Quote]:
    """One quote per sentence with a hit, the earliest ``limit`` of them, in time order."""
    quotes: list[Quote] = []
    seen: set[int] = set()
    for hit in sorted(hits):
        if len(quotes) >= limit:
            break
        if hit.sentence in seen:
            continue
        seen.add(hit.sentence)
        s = sentences[hit.sentence]
        start, end = s.start, s.end
        if len(s) > MAX_QUOTE_WORDS:
            start = max(s.start, hit.start - QUOTE_CONTEXT_WORDS)
            end = min(s.end, hit.end + QUOTE_CONTEXT_WORDS)
        quotes.append(
            Quote(
                feature=feature,
                text=span_text(tokens, start, end),
                start_s=tokens[start].start_s,
                end_s=tokens[end - 1].end_s,
            )
        )
    return quotes


# --- Entry point -----------------------------------------------------------------------------------


def analyse_transcript(
    segments: Sequence[TranscriptSegment],
    question: str = "",
    *,
    max_quotes_per_feature: int = MAX_QUOTES_PER_FEATURE,
) -> NlpSignals:
    """Measure what was said in one answer to ``question``.

    Rates are per 100 spoken words (filled pauses included) and ``None`` when nothing was said;
    ``relevance`` and ``question_reference_rate`` are ``None`` without a question that has content
    words. Quotes are listed by feature in :data:`QUOTE_FEATURES` order, each in time order.
    """
    tokens = tokenise(segments)
    n = len(tokens)
    if n == 0:
        return NlpSignals(word_count=0)
    sentences = split_sentences(tokens)
    norms = [t.norm for t in tokens]
    stems = [stem(w) for w in norms]
    m = _matchers()

    fillers: list[_Hit] = []
    hedges: list[_Hit] = []
    perspective: list[_Hit] = []
    star: dict[str, list[_Hit]] = {part: [] for part in lexicon.STAR_PARTS}
    for k, s in enumerate(sentences):
        lo, hi = s.start, s.end
        fillers += [_Hit(k, i, i + 1) for i in range(lo, hi) if is_filled_pause(norms[i])]
        fillers += [
            _Hit(k, i, j)
            for i, j in m.fillers.find(norms, lo, hi, lambda i, _j, p: _filler_in_context(tokens, lo, hi, i, p))
        ]
        hedges += [
            _Hit(k, i, j) for i, j in m.hedges.find(norms, lo, hi, lambda i, _j, p: _hedge_in_context(tokens, lo, i, p))
        ]
        perspective += [_Hit(k, i, j) for i, j in m.perspective.find(stems, lo, hi)]
        for part, matcher in m.star.items():
            star[part] += [_Hit(k, i, j) for i, j in matcher.find(stems, lo, hi)]
    fillers.sort()

    sentence_of = [k for k, s in enumerate(sentences) for _ in range(len(s))]
    i_count = sum(1 for w in norms if w in lexicon.FIRST_PERSON_SINGULAR)
    we_hits = [
        _Hit(sentence_of[i], i, i + 1)
        for i, t in enumerate(tokens)
        if t.norm in lexicon.FIRST_PERSON_PLURAL and not _is_country_us(t)
    ]
    we_count = len(we_hits)

    question_terms = _content_stems(normalise(w) for w in question.split())
    question_stems = set(question_terms)
    answer_terms = _content_stems(norms)
    echoes = [
        _Hit(sentence_of[i], i, i + 1) for i in range(n) if stems[i] in question_stems and _is_content(norms[i])
    ]
    relevance = _cosine(question_terms, answer_terms) if question_terms and answer_terms else None

    star_parts = [part for part in lexicon.STAR_PARTS if star[part]]
    filler_tokens = {i for h in fillers for i in range(h.start, h.end)}
    lexical = [w for w in norms if not is_filled_pause(w)]

    limit = max_quotes_per_feature
    quotes = [
        *_quotes(FILLERS, fillers, tokens, sentences, limit),
        *_quotes(HEDGES, hedges, tokens, sentences, limit),
        *_quotes(PERSPECTIVE_TAKING, perspective, tokens, sentences, limit),
        *_quotes(QUESTION_REFERENCE, echoes, tokens, sentences, limit),
        *(q for part in lexicon.STAR_PARTS for q in _quotes(STAR_FEATURES[part], star[part], tokens, sentences, limit)),
        *_quotes(WE, we_hits, tokens, sentences, limit),
    ]

    return NlpSignals(
        word_count=n,
        filler_count=len(fillers),
        filler_rate=_per_100(len(fillers), n),
        hedge_rate=_per_100(len(hedges), n),
        i_count=i_count,
        we_count=we_count,
        we_ratio=we_count / (we_count + i_count) if we_count + i_count else None,
        lexical_diversity=_mattr(lexical),
        sentence_count=len(sentences),
        mean_sentence_words=n / len(sentences),
        star_coverage=len(star_parts) / len(lexicon.STAR_PARTS),
        star_parts=star_parts,
        relevance=relevance,
        question_reference_rate=_per_100(len(echoes), n) if question_stems else None,
        perspective_taking_rate=_per_100(len(perspective), n),
        sentiment=_sentiment(tokens, sentences, filler_tokens),
        quotes=quotes,
    )
