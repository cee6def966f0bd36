"""Content features of transcripts: counts, rates, structure, relevance and their quotes."""

from __future__ import annotations

import pytest
from poise_common.signals import NlpSignals, TranscriptSegment, Word

from poise_nlp.features import analyse_transcript
from poise_nlp.tokens import normalise, split_sentences, stem, tokenise

WORD_STEP_S = 0.3
WORD_DURATION_S = 0.25

CONFLICT_QUESTION = "Tell me about a time you resolved a conflict with a difficult teammate."

STAR_ANSWER = (
    "When I was at my previous company, two engineers on my team had a conflict about code reviews. "
    "My role was to keep the release on schedule. "
    "I decided to meet each of them, and I listened to their concerns. "
    "We agreed on a shared review checklist. "
    "As a result, review time dropped by half and we shipped on time."
)

RAMBLING_ANSWER = (
    "Well, I mean, I think people are generally fine. "
    "Weekends are nice and coffee is good. "
    "Honestly it depends on lots of things, you know, and stuff."
)


def words(text: str, start_s: float, step_s: float = WORD_STEP_S) -> list[Word]:
    """Whisper-style words: leading space, punctuation attached, one word every ``step_s``."""
    out = []
    for k, w in enumerate(text.split()):
        t = round(start_s + k * step_s, 3)
        out.append(Word(start_s=t, end_s=round(t + WORD_DURATION_S, 3), word=f" {w}"))
    return out


def segment(text: str, start_s: float = 0.0) -> TranscriptSegment:
    ws = words(text, start_s)
    return TranscriptSegment(start_s=start_s, end_s=ws[-1].end_s, text=f" {text}", words=ws)


def analyse(text: str, question: str = "") -> NlpSignals:
    return analyse_transcript([segment(text)], question)


def quotes_of(signals: NlpSignals, feature: str) -> list:
    return [q for q in signals.quotes if q.feature == feature]


# --- Tokens ----------------------------------------------------------------------------------------


def test_tokens_keep_times_and_original_text() -> None:
    tokens = tokenise([segment("Hello, Americans. I’m here.", start_s=2.0)])
    assert [t.norm for t in tokens] == ["hello", "americans", "i'm", "here"]
    assert [t.text for t in tokens] == ["Hello,", "Americans.", "I’m", "here."]
    assert tokens[1].start_s == pytest.approx(2.3)
    assert tokens[1].end_s == pytest.approx(2.55)
    assert [(s.start, s.end) for s in split_sentences(tokens)] == [(0, 2), (2, 4)]


def test_segment_without_words_is_spread_evenly_over_its_time() -> None:
    tokens = tokenise([TranscriptSegment(start_s=10.0, end_s=12.0, text=" We fixed it. Done.")])
    assert [t.norm for t in tokens] == ["we", "fixed", "it", "done"]
    assert [t.start_s for t in tokens] == pytest.approx([10.0, 10.5, 11.0, 11.5])
    assert tokens[-1].end_s == pytest.approx(12.0)


def test_punctuation_only_words_are_dropped_but_still_end_sentences() -> None:
    seg = TranscriptSegment(
        start_s=0.0,
        end_s=2.0,
        text=" Yes . No",
        words=[
            Word(start_s=0.0, end_s=0.4, word=" Yes"),
            Word(start_s=0.4, end_s=0.5, word=" ."),
            Word(start_s=0.6, end_s=1.0, word=" No"),
        ],
    )
    tokens = tokenise([seg])
    assert [t.norm for t in tokens] == ["yes", "no"]
    assert len(split_sentences(tokens)) == 2


def test_long_silence_ends_an_unpunctuated_sentence() -> None:
    tokens = tokenise([segment("we planned the launch", 0.0), segment("then it slipped", 5.0)])
    assert len(split_sentences(tokens)) == 2


def test_abbreviation_does_not_end_a_sentence() -> None:
    tokens = tokenise([segment("I asked Dr. Smith for help.")])
    assert len(split_sentences(tokens)) == 1


def test_stemmer_joins_common_forms() -> None:
    assert stem("teams") == stem("team")
    assert stem("managing") == stem("managed") == stem("manage") == stem("management")
    assert stem("conflicts") == stem("conflict") == stem("conflicting")
    assert stem("studies") == stem("studied") == stem("study")
    assert stem("agreed") == stem("agreements")
    assert stem("running") == stem("run")
    assert stem("thing") == "thing"  # too short a stem to strip "-ing"


def test_normalise_handles_typographic_apostrophes_and_punctuation() -> None:
    assert normalise(" Don’t,") == "don't"
    assert normalise('"Americans,"') == "americans"
    assert normalise("...") == ""


# --- Fillers and hedges ----------------------------------------------------------------------------


def test_filled_pauses_and_you_know_are_fillers() -> None:
    signals = analyse("Umm, I think, uh, we did well, you know. Hmmm, it was fine.")
    assert signals.filler_count == 4  # Umm, uh, you know, Hmmm
    assert signals.word_count == 13
    assert signals.filler_rate == pytest.approx(100 * 4 / 13)


def test_like_as_a_verb_is_not_a_filler() -> None:
    signals = analyse("I would like to join your team. I like working with data. I'd like to learn more.")
    assert signals.filler_count == 0


def test_like_as_a_discourse_marker_is_a_filler() -> None:
    signals = analyse("It was, like, chaos. We had like five tickets open and like nobody owned them.")
    assert signals.filler_count == 3


def test_like_after_be_look_or_feel_is_not_a_filler() -> None:
    signals = analyse("It looked like a bug. It felt like a long week. The office was like a maze.")
    assert signals.filler_count == 0


def test_you_know_in_a_question_is_not_a_filler() -> None:
    assert analyse("Do you know the answer? If you know it, tell me.").filler_count == 0


def test_kind_of_is_a_filler_and_hedge_except_as_a_noun() -> None:
    hedging = analyse("It was kind of hard and I sort of gave up.")
    assert hedging.filler_count == 2
    assert hedging.hedge_rate == pytest.approx(100 * 2 / 11)
    noun = analyse("That kind of problem needs a different sort of tool.")
    assert noun.filler_count == 0
    assert noun.hedge_rate == 0.0


def test_hedges_are_counted_per_phrase() -> None:
    signals = analyse("I guess maybe we could probably ship, but I'm not sure.")
    assert signals.hedge_rate == pytest.approx(100 * 4 / 11)


def test_fluent_answer_has_no_fillers() -> None:
    signals = analyse(STAR_ANSWER)
    assert signals.filler_count == 0
    assert signals.filler_rate == 0.0
    assert quotes_of(signals, "fillers") == []


# --- Pronouns --------------------------------------------------------------------------------------


def test_we_versus_i_ratio() -> None:
    signals = analyse("We planned the migration and we shipped it. I tested it myself. Our team was proud.")
    assert signals.we_count == 3  # we, we, our
    assert signals.i_count == 2  # I, myself
    assert signals.we_ratio == pytest.approx(3 / 5)


def test_country_us_is_not_a_pronoun() -> None:
    signals = analyse("I moved to the US and then the U.S. office hired me.")
    assert signals.we_count == 0
    assert signals.i_count == 2
    assert signals.we_ratio == 0.0


def test_we_ratio_is_none_without_first_person_pronouns() -> None:
    assert analyse("The project shipped on time.").we_ratio is None


def test_we_quotes_are_sentences_using_we() -> None:
    signals = analyse(STAR_ANSWER)
    texts = [q.text for q in quotes_of(signals, "we")]
    assert texts == [
        "We agreed on a shared review checklist.",
        "As a result, review time dropped by half and we shipped on time.",
    ]


# --- Lexical diversity -----------------------------------------------------------------------------


def test_mattr_is_higher_for_varied_text() -> None:
    repetitive = " ".join(["we did the work and then we did the work again."] * 8)
    varied = (
        "Our small platform group inherited a fragile billing service last spring. Customers saw "
        "duplicate invoices whenever nightly batches overlapped with manual refunds. I mapped every "
        "failure path, wrote reproducible tests, and proposed idempotent payment keys. Finance "
        "reviewers approved quickly because dashboards showed fewer disputes within two weeks. "
        "Afterwards support tickets about billing fell sharply, and auditors praised clearer records."
    )
    low = analyse(repetitive).lexical_diversity
    high = analyse(varied).lexical_diversity
    assert analyse(repetitive).word_count > 50 and analyse(varied).word_count > 50
    assert low is not None and high is not None
    assert high > low
    assert 0.0 < low < 0.5 < high <= 1.0


def test_lexical_diversity_needs_ten_words() -> None:
    assert analyse("We shipped it on time.").lexical_diversity is None
    short = analyse("We shipped the new billing system two weeks before the deadline.")
    assert short.lexical_diversity == pytest.approx(10 / 11)  # plain TTR: "the" repeats


# --- Structure -------------------------------------------------------------------------------------


def test_star_answer_covers_all_four_parts() -> None:
    signals = analyse(STAR_ANSWER, CONFLICT_QUESTION)
    assert signals.star_coverage == 1.0
    assert signals.star_parts == ["situation", "task", "action", "result"]
    assert quotes_of(signals, "star_task")[0].text == "My role was to keep the release on schedule."
    result = quotes_of(signals, "star_result")[0]
    assert result.text == "As a result, review time dropped by half and we shipped on time."


def test_rambling_answer_covers_less_than_half_of_star() -> None:
    signals = analyse(RAMBLING_ANSWER, CONFLICT_QUESTION)
    assert signals.star_coverage is not None and signals.star_coverage < 0.5


def test_sentence_statistics() -> None:
    signals = analyse(STAR_ANSWER)
    assert signals.sentence_count == 5
    assert signals.mean_sentence_words == pytest.approx(signals.word_count / 5)


# --- Relevance and active listening -----------------------------------------------------------------


def test_on_topic_answer_is_more_relevant_than_off_topic() -> None:
    on_topic = analyse(STAR_ANSWER + " The difficult teammate and I resolved the conflict.", CONFLICT_QUESTION)
    off_topic = analyse("I enjoy hiking in the mountains and cooking pasta for friends on weekends.", CONFLICT_QUESTION)
    assert on_topic.relevance is not None and off_topic.relevance is not None
    assert on_topic.relevance > off_topic.relevance
    assert off_topic.relevance == 0.0
    assert 0.0 < on_topic.relevance <= 1.0


def test_relevance_is_none_without_a_question() -> None:
    signals = analyse(STAR_ANSWER)
    assert signals.relevance is None
    assert signals.question_reference_rate is None


def test_question_reference_counts_echoed_question_terms() -> None:
    signals = analyse("The conflict with that teammate was difficult, but we resolved it.", CONFLICT_QUESTION)
    # conflict, teammate, difficult, resolved; frame words such as "time" do not count.
    assert signals.question_reference_rate == pytest.approx(100 * 4 / signals.word_count)
    quote = quotes_of(signals, "question_reference")[0]
    assert quote.text == "The conflict with that teammate was difficult, but we resolved it."


def test_question_frame_words_are_not_echoes() -> None:
    signals = analyse("There was a time I went to tell a story.", CONFLICT_QUESTION)
    assert signals.question_reference_rate == 0.0


def test_perspective_taking_phrases() -> None:
    signals = analyse(
        "I put myself in their shoes and tried to understand why they were upset. "
        "I listened to their concerns. Then we met again."
    )
    # "put myself in", "understand why", "listened to", "their concerns"
    assert signals.perspective_taking_rate == pytest.approx(100 * 4 / signals.word_count)
    assert [q.text for q in quotes_of(signals, "perspective_taking")] == [
        "I put myself in their shoes and tried to understand why they were upset.",
        "I listened to their concerns.",
    ]


# --- Quotes ----------------------------------------------------------------------------------------


def test_hedge_quote_spans_its_sentence_times() -> None:
    first = "We launched the feature on Monday."
    second = "I think the rollout went well overall."
    start_s = 4.0
    signals = analyse_transcript([segment(f"{first} {second}", start_s)])
    [quote] = quotes_of(signals, "hedges")
    assert quote.text == second
    first_word_of_second = start_s + len(first.split()) * WORD_STEP_S
    last_word_of_second = start_s + (len(first.split()) + len(second.split()) - 1) * WORD_STEP_S
    assert quote.start_s == pytest.approx(first_word_of_second)
    assert quote.end_s == pytest.approx(last_word_of_second + WORD_DURATION_S)


def test_quotes_follow_word_times_across_segments() -> None:
    signals = analyse_transcript(
        [segment("We shipped it.", 0.0), segment("Maybe it was late.", 30.0)], "When did you ship?"
    )
    [quote] = quotes_of(signals, "hedges")
    assert (quote.start_s, quote.text) == (30.0, "Maybe it was late.")


def test_quotes_are_capped_and_in_time_order() -> None:
    text = " ".join(f"Maybe step {k} failed." for k in range(6))
    signals = analyse_transcript([segment(text, 1.0)], max_quotes_per_feature=3)
    hedges = quotes_of(signals, "hedges")
    assert [q.text for q in hedges] == ["Maybe step 0 failed.", "Maybe step 1 failed.", "Maybe step 2 failed."]
    assert [q.start_s for q in hedges] == sorted(q.start_s for q in hedges)


def test_quotes_are_verbatim_transcript_text() -> None:
    signals = analyse(RAMBLING_ANSWER + " " + STAR_ANSWER, CONFLICT_QUESTION)
    assert signals.quotes
    for quote in signals.quotes:
        assert quote.text in RAMBLING_ANSWER + " " + STAR_ANSWER
        assert quote.start_s < quote.end_s


def test_long_unpunctuated_sentence_is_quoted_around_the_cue() -> None:
    padding = " ".join(f"word{k}" for k in range(60))
    signals = analyse(f"{padding} maybe {padding}")
    [quote] = quotes_of(signals, "hedges")
    assert "maybe" in quote.text.split()
    assert len(quote.text.split()) == 25  # twelve words either side
    assert quote.start_s == pytest.approx(48 * WORD_STEP_S)


# --- Sentiment -------------------------------------------------------------------------------------


def test_sentiment_follows_the_tone_of_the_answer() -> None:
    positive = analyse("I loved that project. The team was wonderful and we were proud of the great result.")
    negative = analyse("It was a terrible project. The team was miserable and the result was an awful failure.")
    assert positive.sentiment is not None and positive.sentiment > 0.3
    assert negative.sentiment is not None and negative.sentiment < -0.3


def test_filler_like_does_not_count_as_positive_sentiment() -> None:
    assert analyse("It was, like, a Tuesday.").sentiment == 0.0


# --- Empty input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "segments",
    [
        [],
        [TranscriptSegment(start_s=0.0, end_s=3.0, text=" ")],
        [TranscriptSegment(start_s=0.0, end_s=1.0, text=" ...")],
    ],
)
def test_empty_transcript_has_no_rates(segments: list[TranscriptSegment]) -> None:
    signals = analyse_transcript(segments, CONFLICT_QUESTION)
    assert signals.word_count == 0
    assert signals.filler_count == 0
    for rate in (
        signals.filler_rate,
        signals.hedge_rate,
        signals.we_ratio,
        signals.lexical_diversity,
        signals.mean_sentence_words,
        signals.star_coverage,
        signals.relevance,
        signals.question_reference_rate,
        signals.perspective_taking_rate,
        signals.sentiment,
    ):
        assert rate is None
    assert signals.quotes == []
