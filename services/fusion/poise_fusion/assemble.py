"""Build an answer's result and an interview's scorecard from what the store holds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from poise_common.behaviour.series import SERIES_STEP_S
from poise_common.behaviour.vision_summary import eye_contact_series, summarise_vision
from poise_common.settings import PoiseSettings
from poise_common.signals import AudioSignals, FaceObservation, NlpSignals, VisionSignals
from poise_fusion.framework import Framework
from poise_fusion.scoring import AnswerInputs, roll_up, score_answer
from poise_fusion.scoring_model import CalibratedModel

# The scorecard's signal groups keep measurements only; lists move to their own keys.
_LISTS = {"episodes", "segments", "quotes", "star_parts", "series"}


# Measured over the frames with a face; face_presence and the frame counts describe the whole answer.
_FACE_MEASUREMENTS = (
    "eye_contact_ratio", "smile_ratio", "brow_raise_ratio", "lip_press_ratio", "blink_rate_per_min",
    "head_movement_deg_per_s", "head_yaw_sd_deg",
)


@dataclass(frozen=True)
class EvidenceRules:
    """How much an answer must hold for its measurements to feed scores, and when it gets a warning."""

    min_words: int  # fewer: speech-based competencies are insufficient evidence
    short_answer_words: int  # fewer: scored, with a warning that the scores rest on little evidence
    min_face_presence: float  # a smaller share of frames with a face: face measurements are not kept
    face_presence_warning: float  # a smaller share (but at least min_face_presence): kept, with a warning

    @classmethod
    def from_settings(cls, settings: PoiseSettings) -> EvidenceRules:
        return cls(
            min_words=settings.nlp.min_words_for_scoring, short_answer_words=settings.fusion.short_answer_words,
            min_face_presence=settings.fusion.min_face_presence,
            face_presence_warning=settings.fusion.face_presence_warning,
        )


def _measurements(signals: dict) -> dict:
    return {k: v for k, v in signals.items() if k not in _LISTS}


def _percent(share: float) -> str:
    # Cut, not rounded: 49.6 % of the frames must not read as the 50 % needed.
    return f"{math.floor(share * 100)}%"


def _face_measured(presence: float, rules: EvidenceRules) -> bool:
    return presence > 0 and presence >= rules.min_face_presence


def _face_checked(vision: VisionSignals, rules: EvidenceRules, label: str) -> tuple[VisionSignals, list[str]]:
    """The answer's vision signals as they may feed scores, and the warnings about its face.

    A face seen in a few frames is not the answer's face behaviour: its ratios would describe a
    moment (one face frame makes eye contact 0 or 1), so below ``min_face_presence`` the face
    measurements are left unmeasured, as without a face, and drop out of scores like any other.
    """
    presence = vision.face_presence
    if vision.frames_analysed == 0:
        return vision, [f"{label}: no video frames could be analysed; face signals are null"]
    if presence == 0:
        return vision, [f"{label}: no face was found; face signals are null"]
    if not _face_measured(presence, rules):
        unmeasured = vision.model_copy(update=dict.fromkeys(_FACE_MEASUREMENTS))
        return unmeasured, [
            f"{label}: a face was found in only {_percent(presence)} of the frames, under the "
            f"{rules.min_face_presence:.0%} needed; face signals are null and left out of scores"
        ]
    if presence < rules.face_presence_warning:
        return vision, [f"{label}: a face was found in {_percent(presence)} of the frames; "
                        "face signals describe those frames only"]
    return vision, []


def build_answer(
    bundle: dict, framework: Framework, rules: EvidenceRules, policy: str = "default",
    model: CalibratedModel | None = None,
) -> dict:
    media = bundle["media"]
    parts = bundle["parts"]
    question_id = bundle["question_id"]
    question = next((q.get("text", "") for q in bundle["questions"] if q["question_id"] == question_id), "")
    frames = [
        (t_s, count, FaceObservation.model_validate(face) if face else None)
        for t_s, count, face in bundle["frames"]
    ]
    audio = AudioSignals.model_validate(parts["audio"]["signals"])
    nlp = NlpSignals.model_validate(parts["nlp"]["signals"])
    transcript = parts["transcript"]["segments"]

    label = f"answer {question_id}"
    vision, warnings = _face_checked(summarise_vision(frames, media["sample_fps"]), rules, label)
    has_face = _face_measured(vision.face_presence, rules)
    if vision.multiple_faces_ratio > 0.05:
        warnings.append(
            f"{label}: more than one face in {vision.multiple_faces_ratio:.0%} of frames; "
            "the main (tracked) face was measured"
        )
    missing = parts["vision_end"]["count"] - vision.frames_analysed
    if missing > 0:
        warnings.append(f"{label}: {missing} video frames could not be analysed")
    has_speech = audio.speech_ratio > 0 and nlp.word_count >= rules.min_words
    if not has_speech:
        warnings.append(
            f"{label}: too little speech ({nlp.word_count} words); speech-based competencies "
            "are marked insufficient evidence"
        )
    elif nlp.word_count < rules.short_answer_words:
        # Rates per 100 words and ratios over a few dozen words swing by whole bands with one word.
        warnings.append(f"{label}: short answer: {nlp.word_count} words; scores rest on little evidence")
    warnings += [f"{label}: {w}" for w in parts["audio"].get("warnings", [])]

    episodes = [e.model_dump() for e in vision.episodes + audio.episodes]
    episodes.sort(key=lambda e: (e["start_s"], e["behaviour"]))
    inputs = AnswerInputs(
        answer_id=bundle["answer_id"],
        question_id=question_id,
        duration_s=media["duration_s"],
        signals={
            "vision": _measurements(vision.model_dump()),
            "audio": _measurements(audio.model_dump()),
            "nlp": _measurements(nlp.model_dump()),
        },
        quotes=[q.model_dump() for q in nlp.quotes],
        episodes=episodes,
        has_speech=has_speech,
        has_face=has_face,
    )
    return {
        "answer_id": bundle["answer_id"],
        "question_id": question_id,
        "question": question,
        "duration_s": round(media["duration_s"], 3),
        "media": {k: media.get(k) for k in ("width", "height", "source_fps", "sample_fps", "frame_count", "audio_count")},
        # How the face signals were measured, for audits and calibrations (None: an earlier vision worker).
        "face_method": parts["vision_end"].get("face_method"),
        "transcript": transcript,
        "signals": inputs.signals,
        "star_parts": nlp.star_parts,
        "speech_segments": [s.model_dump() for s in audio.segments],
        "episodes": episodes,
        "series": _series(frames, media, audio),
        "quotes": inputs.quotes,
        "policy": policy,
        "model_version": model_version(framework, model),
        "competencies": score_answer(framework, inputs, policy, model),
        "warnings": warnings,
    }


def _series(frames: list, media: dict, audio: AudioSignals) -> dict:
    """Eye contact and the audio's series second by second, for plots (never for scores)."""
    series: dict = {
        "step_s": SERIES_STEP_S,
        "eye_contact": eye_contact_series(frames, media["sample_fps"], media["duration_s"]),
    }
    if audio.series is not None:  # None from an audio service older than the series
        series.update(audio.series.model_dump(exclude={"step_s"}))
    return series


def model_version(framework: Framework, model: CalibratedModel | None = None) -> str:
    # Rule-based norms until a calibrated model is activated for the framework.
    return model.version if model is not None else f"{framework.name}@{framework.version}+norms"


def build_scorecard(
    bundle: dict, framework: Framework, policy: str = "default", notice: dict | None = None,
    model: CalibratedModel | None = None,
) -> dict:
    """``notice``: the candidate notice the policy makes the scorecard carry (us-nyc), else None;
    ``model``: the calibrated model the answers were scored with, else None (the framework's norms)."""
    order = {q["question_id"]: i for i, q in enumerate(bundle["questions"])}
    answers = sorted(bundle["answers"], key=lambda a: (order.get(a["question_id"], 1 << 30), a["answer_id"]))
    return {
        "interview_id": bundle["interview_id"],
        "tenant": bundle["tenant"],
        "role": bundle["role"],
        "status": "scored",
        "model_version": model_version(framework, model),
        # The bands go with the scores they named, so a reader draws them as they were when scored.
        "framework": {"name": framework.name, "version": framework.version,
                      "bands": [{"name": b.name, "below": b.below} for b in framework.bands]},
        "policy": policy,
        "notice": notice,
        "consent": bundle.get("consent"),
        "competencies": roll_up(framework, [a["competencies"] for a in answers]),
        "answers": answers,
        "warnings": [w for a in answers for w in a["warnings"]],
    }
