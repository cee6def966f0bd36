"""The typed envelope that every bus message carries, and its payloads.

Payloads are a discriminated union on ``kind``, so a consumer receives a typed object and
a message of the wrong shape fails validation at the edge (and goes to the dead letter).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from poise_common.signals import (
    AudioSignals,
    FaceObservation,
    NlpSignals,
    TranscriptSegment,
)

SCHEMA_VERSION = 1


class Topics:
    """Topic names before the configurable prefix."""

    MEDIA_FRAMES = "media.frames"
    MEDIA_AUDIO = "media.audio"
    MEDIA_CONTROL = "media.control"
    FEATURES_VISION = "features.vision"
    FEATURES_AUDIO = "features.audio"
    TRANSCRIPTS = "transcripts"
    FEATURES_NLP = "features.nlp"
    SCORECARDS = "scorecards.v1"

    @staticmethod
    def dead_letter(group: str) -> str:
        return f"dlq.{group}"


class Question(BaseModel):
    question_id: str
    text: str = ""


class Consent(BaseModel):
    """The candidate's consent to analysis, as the interview's creator recorded it."""

    given_at: float = Field(
        gt=0, allow_inf_nan=False,
        description="When the candidate consented, Unix seconds (ISO-8601 with a time zone is accepted).",
    )
    notice_version: str = Field(min_length=1, max_length=128, description="The notice the candidate agreed to.")

    @field_validator("given_at", mode="before")
    @classmethod
    def _unix_seconds(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return float(value)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO-8601 time or Unix seconds") from None
        if moment.tzinfo is None:  # a local time would be read differently on every host
            raise ValueError("an ISO-8601 time needs a time zone, e.g. 2025-03-01T09:30:00Z")
        return moment.timestamp()


class InterviewOpened(BaseModel):
    """media.control: an interview and the answers it will have."""

    kind: Literal["interview.opened"] = "interview.opened"
    role: str
    questions: list[Question]
    consent: Consent | None = Field(None, description="None: no consent was recorded.")


class AnswerMediaDone(BaseModel):
    """media.control: the gateway has published every frame and audio chunk of an answer."""

    kind: Literal["answer.media_done"] = "answer.media_done"
    question_id: str
    duration_s: float
    frame_count: int
    audio_count: int
    has_video: bool
    width: int | None = None
    height: int | None = None
    source_fps: float | None = None
    sample_fps: float
    warnings: list[str] = Field(default_factory=list)


class InterviewWithdrawn(BaseModel):
    """media.control: the gateway takes back what it published of an interview, because one of
    its answers could not be decoded in full. Fusion drops what it holds for ``answer_ids`` and
    every later message for them; the interview is announced again, with new answer ids, once
    the candidate's answers are complete again."""

    kind: Literal["interview.withdrawn"] = "interview.withdrawn"
    answer_ids: list[str]


_BINARY = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")


class Frame(BaseModel):
    """media.frames: one sampled video frame."""

    model_config = _BINARY

    kind: Literal["frame"] = "frame"
    t_s: float
    width: int
    height: int
    jpeg: bytes


class FramesEnd(BaseModel):
    """media.frames: after the last frame of an answer."""

    kind: Literal["frames.end"] = "frames.end"
    count: int


class AudioChunk(BaseModel):
    """media.audio: 16 kHz mono signed 16-bit PCM."""

    model_config = _BINARY

    kind: Literal["audio.chunk"] = "audio.chunk"
    t_s: float
    sample_rate: int = 16000
    pcm: bytes


class AudioEnd(BaseModel):
    """media.audio: after the last chunk of an answer."""

    kind: Literal["audio.end"] = "audio.end"
    count: int
    question: str = ""


class FrameFeatures(BaseModel):
    """features.vision: what vision saw in one frame (seq equals the frame's seq).

    Vision now sends frames in batches (:class:`FrameFeaturesBatch`); fusion still stores this
    form, which workers of earlier releases left on the topic."""

    kind: Literal["vision.frame"] = "vision.frame"
    t_s: float
    face_count: int
    face: FaceObservation | None = None


class FrameSeen(BaseModel):
    """One frame of a :class:`FrameFeaturesBatch`."""

    seq: int = Field(description="The frame's seq on media.frames.")
    t_s: float
    face_count: int
    face: FaceObservation | None = None


class FrameFeaturesBatch(BaseModel):
    """features.vision: what vision saw in consecutive frames of one answer, in frame order.

    The envelope's seq is the first frame's. One message per many frames: fusion stores each
    batch in one transaction instead of one per frame."""

    kind: Literal["vision.frames"] = "vision.frames"
    frames: list[FrameSeen] = Field(min_length=1)


class VisionEnd(BaseModel):
    """features.vision: vision has answered every frame of the answer."""

    kind: Literal["vision.end"] = "vision.end"
    count: int
    face_method: str | None = Field(
        None, description="How the faces were measured (``InferenceBackend.face_method``); None from a vision "
        "worker of an earlier release.",
    )


class AudioFeatures(BaseModel):
    """features.audio: prosody and voice activity of a whole answer."""

    kind: Literal["audio.features"] = "audio.features"
    signals: AudioSignals
    warnings: list[str] = Field(default_factory=list)


class Transcript(BaseModel):
    """transcripts: the words of a whole answer, with timings."""

    kind: Literal["transcript"] = "transcript"
    question: str = ""
    language: str = "en"
    duration_s: float
    segments: list[TranscriptSegment]


class NlpFeatures(BaseModel):
    """features.nlp: content features of one answer."""

    kind: Literal["nlp.features"] = "nlp.features"
    signals: NlpSignals


class ScoreEvent(BaseModel):
    """scorecards.v1: a scored answer or interview, or a failure."""

    kind: Literal["score.event"] = "score.event"
    type: Literal["answer.scored", "interview.scored", "interview.failed"]
    scorecard: dict | None = None
    error: str | None = None


Payload = Annotated[
    Union[
        InterviewOpened,
        AnswerMediaDone,
        InterviewWithdrawn,
        Frame,
        FramesEnd,
        AudioChunk,
        AudioEnd,
        FrameFeatures,
        FrameFeaturesBatch,
        VisionEnd,
        AudioFeatures,
        Transcript,
        NlpFeatures,
        ScoreEvent,
    ],
    Field(discriminator="kind"),
]


class Envelope(BaseModel):
    """What travels on every topic. The bus key is ``interview_id``."""

    model_config = ConfigDict(frozen=True)

    interview_id: str
    answer_id: str = Field("", description="Empty for interview-level messages.")
    tenant: str
    stream: str = Field(description="Which sequence seq counts in, e.g. frames, audio, vision.")
    seq: int = Field(ge=0)
    schema_version: int = SCHEMA_VERSION
    created_at: float = Field(default_factory=time.time)
    trace_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    payload: Payload

    @property
    def dedup_key(self) -> tuple[str, str, int]:
        """Consumers apply a message once per (answer_id, stream, seq)."""
        return (self.answer_id, self.stream, self.seq)

    def follow(self, stream: str, seq: int, payload: BaseModel) -> "Envelope":
        """A message caused by this one: same interview, answer, tenant and trace."""
        return Envelope(
            interview_id=self.interview_id,
            answer_id=self.answer_id,
            tenant=self.tenant,
            stream=stream,
            seq=seq,
            trace_id=self.trace_id,
            payload=payload,
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Envelope":
        return cls.model_validate_json(data)
