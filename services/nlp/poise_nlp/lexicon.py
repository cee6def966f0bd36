"""Word lists behind the content features.

Everything here is a constant. Single words are compared with a token's normalised form
(lowercase, punctuation removed, apostrophes kept, see :mod:`poise_nlp.tokens`); phrases are
space-separated and matched word by word inside one sentence. Lists marked *stem-matched* are
compared after :func:`poise_nlp.tokens.stem`, so one entry also covers its inflections
("increased" matches "increase", "increasing"); the others are matched on exact words because
their function words carry the meaning ("i mean" is not "i meant").

The lists are short and hand-picked: each entry should be a reasonably unambiguous cue in a spoken
interview answer. A missed cue costs less than a false one, because every hit becomes evidence a
reviewer reads.
"""

from __future__ import annotations

import re

# --- Fillers -------------------------------------------------------------------------------------

# Filled pauses as Whisper spells them once it is prompted with disfluent text (MODELS.md): the
# usual transcription conventions for the English "uh/um" family (Clark & Fox Tree 2002) plus the
# British "er/erm" and the closed-mouth "hmm/mm".
FILLED_PAUSES: frozenset[str] = frozenset({"um", "umm", "uh", "uhh", "uhm", "er", "erm", "hmm", "hm", "mm"})

# Whisper stretches filled pauses with extra letters ("ummm", "uhhhh", "hmmmm"); these shapes
# are never English words, so any elongation of the set above counts too.
FILLED_PAUSE_PATTERN: re.Pattern[str] = re.compile(r"(?:u+h*m+|u+h+|e+r+m*|h+m+|m{2,})")

# Lexical fillers: words and phrases that, in filler use, add no content. Taken from the
# discourse-marker literature (Schiffrin 1987; Fox Tree & Schrock 2002 on "you know"/"I mean")
# and from interview-coaching lists. "like", "you know", "i mean", "kind of" and "sort of" also
# have content uses; features.py only counts them in the contexts described next to the lists
# below. "basically", "actually" and "literally" are counted everywhere: in spoken answers their
# content use is rare enough that telling the two apart is not worth the false negatives.
LEXICAL_FILLERS: tuple[str, ...] = (
    "like",
    "you know",
    "i mean",
    "kind of",
    "sort of",
    "basically",
    "actually",
    "literally",
)

# "like" is a verb or a preposition after these words, not a filler: forms of "be" ("it was like
# a maze"; the quotative "I was like" is ambiguous and left out), of "look/feel/seem/sound"
# ("it felt like"), modals and "do" ("I would like to", "I don't like"), subject pronouns
# ("I like working") and nouns or adverbs of comparison ("things like budgets", "just like").
# Contractions ending in 's, 'm, 're, 'd and n't are handled by suffix in features.py.
LIKE_NON_FILLER_PRECEDERS: frozenset[str] = frozenset(
    {
        # be
        "am", "is", "are", "was", "were", "be", "been", "being",
        # look / feel / seem / sound
        "look", "looks", "looked", "looking",
        "feel", "feels", "felt", "feeling",
        "seem", "seems", "seemed", "seeming",
        "sound", "sounds", "sounded", "sounding",
        # modals and do
        "would", "should", "could", "might", "may", "will", "shall", "can", "must",
        "do", "does", "did", "not", "never", "really", "also",
        # subject pronouns and relatives
        "i", "you", "we", "they", "he", "she", "people", "who", "that",
        # comparison
        "just", "exactly", "much", "more", "most", "less", "something", "anything", "nothing",
        "things", "stuff", "someone", "somebody", "anyone", "nobody",
    }
)  # fmt: skip

# "you know" is a question or a condition, not a filler, after these ("do you know", "if you
# know", "as you know").
YOU_KNOW_NON_FILLER_PRECEDERS: frozenset[str] = frozenset(
    {
        "do", "did", "does", "don't", "didn't", "doesn't", "if", "whether", "would", "could",
        "should", "will", "can", "as", "what", "how", "when", "unless", "than",
    }
)  # fmt: skip

# "i mean" is literal after these ("that's not what I mean").
I_MEAN_NON_FILLER_PRECEDERS: frozenset[str] = frozenset({"what", "that", "which"})

# After a determiner or quantifier "kind"/"sort" is the noun ("that kind of problem", "a sort of
# checklist"), which is neither a filler nor a hedge.
KIND_OF_NOUN_PRECEDERS: frozenset[str] = frozenset(
    {
        "a", "an", "the", "this", "that", "these", "those", "what", "which", "whatever", "any",
        "some", "every", "each", "no", "one", "same", "other", "another", "different", "certain",
        "my", "your", "our", "their", "his", "her", "its", "all", "right", "wrong", "new",
    }
)  # fmt: skip

# --- Hedges ----------------------------------------------------------------------------------------

# Epistemic hedges (Lakoff 1973; Hyland 1998, "Hedging in Scientific Research Articles"), limited to
# those common in spoken answers. "kind of"/"sort of" are both fillers and hedges; the same noun
# exclusion applies. "i think" is the most frequent and the weakest; it stays because interview
# coaching treats its overuse as the signal.
HEDGES: tuple[str, ...] = (
    "i guess",
    "maybe",
    "perhaps",
    "i think",
    "probably",
    "sort of",
    "kind of",
    "might",
    "possibly",
    "i suppose",
    "not sure",
    "somewhat",
    "more or less",
)

# --- Pronouns --------------------------------------------------------------------------------------

# Naim et al. (MIT Interview dataset, COMPLIANCE.md): "we" rather than "I" went with better
# ratings. Contractions are listed because the tokeniser keeps them as one word.
FIRST_PERSON_SINGULAR: frozenset[str] = frozenset(
    {"i", "me", "my", "mine", "myself", "i'm", "i've", "i'd", "i'll"}
)
FIRST_PERSON_PLURAL: frozenset[str] = frozenset(
    {"we", "us", "our", "ours", "ourselves", "we're", "we've", "we'd", "we'll"}
)

# --- Perspective taking (stem-matched) ------------------------------------------------------------

# Cues of attending to another person's view or feelings, drawn from empathy-in-dialogue coding
# schemes (e.g. Pérez-Rosas et al. 2017 on counselling reflections; Sharma et al. 2020 EPITOME
# "interpretations" and "explorations"). Each is a verbal behaviour, not an inferred emotion.
PERSPECTIVE_TAKING: tuple[str, ...] = (
    "from their perspective",
    "from his perspective",
    "from her perspective",
    "their perspective",
    "their point of view",
    "his point of view",
    "her point of view",
    "in their shoes",
    "in his shoes",
    "in her shoes",
    "put myself in",
    "putting myself in",
    "they felt",
    "he felt",
    "she felt",
    "how they felt",
    "how he felt",
    "how she felt",
    "they were feeling",
    "he was feeling",
    "she was feeling",
    "i understood",
    "understand why",
    "understood why",
    "understand their",
    "understand where",
    "where they were coming from",
    "where he was coming from",
    "where she was coming from",
    "listened to",
    "their concerns",
    "his concerns",
    "her concerns",
    "their needs",
    "what they needed",
    "their side",
    "heard them out",
    "hear them out",
    "asked them how",
    "asked how they",
    "empathize",
    "empathise",
    "empathy",
    "acknowledged",
    "acknowledge their",
    "validated",
)

# --- STAR structure (stem-matched) ----------------------------------------------------------------

# Situation / Task / Action / Result is the structure interviewers are trained to look for in a
# behavioural answer (e.g. DDI's behavioural-interviewing model). The cues are the phrases that
# open each part in coached answers; generic ones ("had to", "so i") are kept because a missing
# part is the informative case, and the quote lets the reviewer check the sentence.
STAR_CUES: dict[str, tuple[str, ...]] = {
    "situation": (
        "when i was",
        "at my previous",
        "at my last",
        "in my previous",
        "in my last",
        "there was a time",
        "the situation",
        "a few years ago",
        "last year",
        "back when",
        "one time",
        "i was working",
        "the context",
        "the background",
    ),
    "task": (
        "my role",
        "my job was",
        "i was responsible",
        "responsible for",
        "the goal",
        "our goal",
        "my goal",
        "needed to",
        "had to",
        "the task",
        "my task",
        "i was tasked",
        "was asked to",
        "the challenge",
        "the problem was",
        "the objective",
    ),
    "action": (
        "i decided",
        "we decided",
        "so i",
        "i organized",
        "i organised",
        "we implemented",
        "i implemented",
        "i reached out",
        "i started",
        "i set up",
        "i created",
        "i proposed",
        "i built",
        "we built",
        "i scheduled",
        "i talked to",
        "i spoke with",
        "i met with",
        "i worked with",
        "i made sure",
        "i led",
        "i introduced",
        "first i",
        "then i",
        "i asked",
    ),
    "result": (
        "as a result",
        "in the end",
        "which led to",
        "led to",
        "we achieved",
        "i achieved",
        "resulted in",
        "the result",
        "ended up",
        "increased",
        "reduced",
        "decreased",
        "improved",
        "saved",
        "outcome",
        "percent",
        "we delivered",
        "we launched",
        "successfully",
    ),
}

STAR_PARTS: tuple[str, ...] = ("situation", "task", "action", "result")

# --- Stopwords (relevance) ------------------------------------------------------------------------

# Based on the NLTK English list (Porter's SMART-derived 179 words), extended with spoken
# contractions, discourse words and the fillers above, so that relevance and question echoes
# rest on content words only.
STOPWORDS: frozenset[str] = frozenset(
    {
        "a", "about", "above", "after", "again", "against", "ain't", "all", "also", "am", "an",
        "and", "any", "are", "aren't", "as", "at", "be", "because", "been", "before", "being",
        "below", "between", "both", "but", "by", "can", "can't", "cannot", "could", "couldn't",
        "did", "didn't", "do", "does", "doesn't", "doing", "don't", "down", "during", "each",
        "either", "else", "even", "ever", "every", "few", "for", "from", "further", "get", "gets",
        "getting", "got", "gonna", "had", "hadn't", "has", "hasn't", "have", "haven't", "having",
        "he", "he'd", "he'll", "he's", "her", "here", "here's", "hers", "herself", "him",
        "himself", "his", "how", "how's", "i", "i'd", "i'll", "i'm", "i've", "if", "in", "into",
        "is", "isn't", "it", "it'd", "it'll", "it's", "its", "itself", "just", "let's", "lot",
        "lots", "many", "may", "me", "might", "more", "most", "much", "must", "mustn't", "my",
        "myself", "no", "nor", "not", "now", "of", "off", "oh", "ok", "okay", "on", "once",
        "one", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own",
        "pretty", "quite", "rather", "really", "right", "said", "same", "say", "says", "shall",
        "shan't", "she", "she'd", "she'll", "she's", "should", "shouldn't", "so", "some", "still",
        "such", "than", "that", "that's", "the", "their", "theirs", "them", "themselves", "then",
        "there", "there's", "these", "they", "they'd", "they'll", "they're", "they've", "thing",
        "things", "this", "those", "though", "through", "to", "too", "under", "until", "up",
        "upon", "us", "very", "wanna", "was", "wasn't", "we", "we'd", "we'll", "we're", "we've",
        "well", "were", "weren't", "what", "what's", "when", "when's", "where", "where's",
        "whether", "which", "while", "who", "who's", "whom", "why", "why's", "will", "with",
        "within", "without", "won't", "would", "wouldn't", "yeah", "yes", "yet", "you", "you'd",
        "you'll", "you're", "you've", "your", "yours", "yourself", "yourselves",
        # fillers and hedge words
        "like", "know", "mean", "kind", "sort", "basically", "actually", "literally", "maybe",
        "perhaps", "probably", "possibly", "guess", "suppose", "think", "somewhat",
        "um", "umm", "uh", "uhh", "uhm", "er", "erm", "hmm", "hm", "mm",
    }
)  # fmt: skip

# Words that frame an interview question rather than carry its topic ("Tell me about a time
# you ...", "Describe a situation ...", "Give an example ..."). Echoing them is not listening to
# the question, so they count as stopwords on both sides.
QUESTION_FRAME_WORDS: frozenset[str] = frozenset(
    {
        "tell", "describe", "give", "example", "examples", "time", "times", "situation",
        "walk", "share", "explain", "talk", "recall", "specific", "instance", "occasion",
        "experience", "experiences", "question", "questions", "answer",
    }
)  # fmt: skip
