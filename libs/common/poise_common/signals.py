"""Measurements that flow between the analysers and fusion.

Every field is an observable behaviour or a plain measurement, never an emotion or a
trait. ``None`` means "not measurable in this answer" (no face, no speech), which
fusion treats as missing evidence, never as zero.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Episode(BaseModel):
    """A stretch of time in which a behaviour was observed."""

    behaviour: str = Field(description="e.g. smile, brow_raise, lip_press, gaze_away, long_pause")
    start_s: float
    end_s: float
    peak: float | None = Field(None, description="Strongest value inside the episode, if graded.")


class FaceObservation(BaseModel):
    """The main face in one sampled frame."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    gaze_x: float = Field(description="Horizontal iris offset in the eye, -1 (left) .. 1 (right).")
    gaze_y: float = Field(description="Vertical iris offset in the eye, -1 (up) .. 1 (down).")
    eyes_open: bool
    eye_contact: bool
    smile: float
    brow_raise: float
    lip_press: float
    lip_pucker: float
    jaw_open: float
    blink: float = Field(description="Larger of the two eyeBlink blendshapes, 0..1.")
    box: tuple[float, float, float, float] = Field(description="x, y, w, h of the face, 0..1 of the frame.")


class VisionSignals(BaseModel):
    """Facial behaviour over one answer."""

    frames_analysed: int
    sample_fps: float
    face_presence: float = Field(description="Share of sampled frames with a face.")
    multiple_faces_ratio: float = Field(description="Share of sampled frames with more than one face.")
    eye_contact_ratio: float | None = None
    smile_ratio: float | None = None
    brow_raise_ratio: float | None = None
    lip_press_ratio: float | None = None
    blink_rate_per_min: float | None = None
    head_movement_deg_per_s: float | None = None
    head_yaw_sd_deg: float | None = None
    episodes: list[Episode] = Field(default_factory=list)


class Word(BaseModel):
    start_s: float
    end_s: float
    word: str
    probability: float | None = None


class TranscriptSegment(BaseModel):
    start_s: float
    end_s: float
    text: str
    words: list[Word] = Field(default_factory=list)


class SpeechSegment(BaseModel):
    start_s: float
    end_s: float


class AudioSeries(BaseModel):
    """How the answer was spoken over time, for plots: bins of ``step_s`` from the answer's start
    (poise_common.behaviour.series); None where a bin has nothing to measure. Scores never use it."""

    step_s: float
    pause: list[float | None] = Field(description="Share of each bin silent between two stretches of speech.")
    speech_rate_wpm: list[float | None] = Field(description="Words per minute of voiced time, over a window.")
    pitch_hz: list[float | None] = Field(description="Mean pitch of the bin's voiced speech.")
    loudness_db: list[float | None] = Field(description="Mean level of the bin's voiced speech, dBFS.")


class AudioSignals(BaseModel):
    """How the answer was spoken."""

    duration_s: float
    speech_s: float
    speech_ratio: float
    first_speech_onset_s: float | None = None
    pause_ratio: float | None = Field(None, description="Silent share between first and last speech.")
    pause_count: int = 0
    mean_pause_s: float | None = None
    long_pause_count: int = 0
    speech_rate_wpm: float | None = Field(None, description="Words per minute of voiced time.")
    pitch_mean_hz: float | None = None
    pitch_variation_st: float | None = Field(None, description="Standard deviation of pitch in semitones.")
    loudness_db: float | None = Field(None, description="Mean level of voiced frames, dBFS.")
    loudness_variation_db: float | None = None
    segments: list[SpeechSegment] = Field(default_factory=list)
    episodes: list[Episode] = Field(default_factory=list)
    series: AudioSeries | None = Field(None, description="The same measurements second by second, for plots.")


class Quote(BaseModel):
    """A span of the transcript that supports a feature."""

    feature: str
    text: str
    start_s: float
    end_s: float


class NlpSignals(BaseModel):
    """What was said."""

    word_count: int
    filler_count: int = 0
    filler_rate: float | None = Field(None, description="Fillers per 100 words.")
    hedge_rate: float | None = Field(None, description="Hedges per 100 words.")
    i_count: int = 0
    we_count: int = 0
    we_ratio: float | None = Field(None, description="we / (we + I) pronouns.")
    lexical_diversity: float | None = Field(None, description="Moving-average type-token ratio.")
    sentence_count: int = 0
    mean_sentence_words: float | None = None
    star_coverage: float | None = Field(None, description="Share of situation/task/action/result present.")
    star_parts: list[str] = Field(default_factory=list)
    relevance: float | None = Field(None, description="Similarity of the answer to the question, 0..1.")
    question_reference_rate: float | None = Field(None, description="Question terms echoed per 100 words.")
    perspective_taking_rate: float | None = Field(None, description="Perspective-taking phrases per 100 words.")
    sentiment: float | None = Field(None, description="Mean VADER compound score, -1..1.")
    quotes: list[Quote] = Field(default_factory=list)
