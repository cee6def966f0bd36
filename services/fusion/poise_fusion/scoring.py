"""Turn one answer's signals into competency scores with contributions and evidence.

Pure functions: the same inputs always give the same scorecard, which is what lets a
replayed or re-run interview be compared exactly with the first run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from poise_fusion.framework import Competency, FeatureWeight, Framework
from poise_fusion.policy import PolicyProfile, get_profile
from poise_fusion.scoring_model import CalibratedModel, CompetencyModel, weighted_points

MAX_EVIDENCE_PER_FEATURE = 3
MAX_EVIDENCE_PER_COMPETENCY = 8


@dataclass
class AnswerInputs:
    """Everything fusion knows about one answer once all its streams are complete."""

    answer_id: str
    question_id: str
    duration_s: float
    signals: dict[str, dict]  # "vision" | "audio" | "nlp" -> measured fields (None = not measurable)
    quotes: list[dict] = field(default_factory=list)  # Quote dicts
    episodes: list[dict] = field(default_factory=list)  # Episode dicts
    has_speech: bool = True
    has_face: bool = True


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def feature_value(inputs: AnswerInputs, feature: str) -> float | None:
    group, _, name = feature.partition(".")
    value = (inputs.signals.get(group) or {}).get(name)
    return None if value is None else float(value)


def _evidence_for(inputs: AnswerInputs, spec: FeatureWeight, value: float, episodes: bool = True) -> list[dict]:
    items: list[dict] = []
    for source in spec.evidence:
        kind, _, name = source.partition(":")
        if kind == "episodes" and not episodes:
            continue  # face and voice behaviour is not evidence of a competency under this policy
        if kind == "quotes":
            matches = [q for q in inputs.quotes if q["feature"] == name]
            items += [
                {"kind": "quote", "feature": spec.feature, "answer_id": inputs.answer_id,
                 "question_id": inputs.question_id, "start_s": _r(q["start_s"], 2),
                 "end_s": _r(q["end_s"], 2), "text": q["text"]}
                for q in matches[:MAX_EVIDENCE_PER_FEATURE]
            ]
        else:
            matches = _strongest([e for e in inputs.episodes if e["behaviour"] == name])
            items += [
                {"kind": "episode", "feature": spec.feature, "answer_id": inputs.answer_id,
                 "question_id": inputs.question_id, "start_s": _r(e["start_s"], 2),
                 "end_s": _r(e["end_s"], 2), "signal": name, "peak": _r(e.get("peak"))}
                for e in matches
            ]
    # The measurement itself is always evidence: which signal, what value, over which time.
    items.append(
        {"kind": "signal", "feature": spec.feature, "answer_id": inputs.answer_id,
         "question_id": inputs.question_id, "start_s": 0.0, "end_s": _r(inputs.duration_s, 2),
         "signal": spec.feature, "value": _r(value)}
    )
    return items


def _strength(episode: dict) -> float:
    """How much of the behaviour an episode shows: its duration times its peak (yes/no
    behaviours, without a peak, by duration alone)."""
    peak = episode.get("peak")
    return (episode["end_s"] - episode["start_s"]) * (1.0 if peak is None else peak)


def _strongest(episodes: list[dict]) -> list[dict]:
    """The strongest few episodes, in time order. The first few by time would show whatever came
    first (a flicker at the start) and leave out the clearest display later in the answer."""
    chosen = sorted(episodes, key=lambda e: (-_strength(e), e["start_s"]))[:MAX_EVIDENCE_PER_FEATURE]
    return sorted(chosen, key=lambda e: e["start_s"])


def _insufficient(competency: Competency, reason: str) -> dict:
    return {
        "name": competency.name, "label": competency.label, "score": None,
        "band": "insufficient_evidence", "status": "insufficient_evidence", "reason": reason,
        "coverage": 0.0, "contributions": [], "evidence": [],
    }


def score_competency(
    framework: Framework, competency: Competency, inputs: AnswerInputs, policy: str = "default",
    model: CompetencyModel | None = None,
) -> dict:
    """``model``: the competency's calibrated parameters; None scores with the framework's norms."""
    profile = get_profile(policy)
    if "speech" in competency.requires and not inputs.has_speech:
        return _insufficient(competency, "no speech in the answer")
    eligible = [(b.name, f) for b in competency.behaviours for f in b.features if profile.feeds(f)]
    if not eligible:
        return _insufficient(competency, profile.excluded_reason)
    # A policy that keeps the face out of scores does not let its absence decide either.
    if "face" in competency.requires and "face" in profile.modalities and not inputs.has_face:
        return _insufficient(competency, "no face in the answer")
    if model is not None:
        eligible = _first_per_feature(eligible)  # calibrated weights are per feature
    weight = (lambda f: f.weight) if model is None else (lambda f: model.weights.get(f.feature, 0.0))
    values = [feature_value(inputs, f.feature) for _, f in eligible]
    normalised = [None if v is None else f.normalise(v) for (_, f), v in zip(eligible, values)]
    model_coverage, points = weighted_points(
        [weight(f) for _, f in eligible], normalised, 100.0 if model is None else model.span
    )
    # A calibrated model must also have its own weight measured: the framework's weights may
    # spread evenly what the model puts on one feature.
    coverage = min(evidence_coverage(competency, profile.feeds, inputs), model_coverage)
    if all(n is None for n in normalised) or coverage < framework.min_coverage:
        result = _insufficient(competency, _too_little_reason(competency, profile, framework.min_coverage))
        result["coverage"] = _r(coverage)
        return result
    contributions = [] if model is None else [_baseline(model.intercept)]
    evidence = []
    for (behaviour, spec), value, norm, share in zip(eligible, values, normalised, points):
        if value is None:
            continue
        contributions.append(
            {"feature": spec.feature, "behaviour": behaviour, "modality": spec.modality,
             "value": _r(value), "normalised": _r(norm), "weight": weight(spec), "points": share}
        )
        evidence += _evidence_for(inputs, spec, value, profile.episode_evidence)
    score = _settle(contributions)
    return {
        "name": competency.name, "label": competency.label, "score": score,
        "band": framework.band(score), "status": "scored", "reason": None,
        "coverage": _r(coverage), "contributions": contributions,
        "evidence": _rank_evidence(evidence),
    }


def evidence_coverage(competency: Competency, allowed: Callable[[FeatureWeight], bool], inputs: AnswerInputs) -> float:
    """The share of the competency's whole weight in the framework that was measured and may feed
    its score. Against the whole weight, not the policy's part of it: a policy that keeps most of a
    competency's evidence out leaves too little for a score, rather than a score on what is left."""
    total = sum(spec.weight for spec in competency.features)
    measured = sum(
        spec.weight for spec in competency.features
        if allowed(spec) and feature_value(inputs, spec.feature) is not None
    )
    return measured / total


def _too_little_reason(competency: Competency, profile: PolicyProfile, min_coverage: float) -> str:
    total = sum(spec.weight for spec in competency.features)
    allowed = sum(spec.weight for spec in competency.features if profile.feeds(spec))
    if allowed / total < min_coverage:
        return (f"the {profile.name} policy lets only {allowed / total:.0%} of its weight feed a score, "
                f"under the {min_coverage:.0%} it needs")
    return "too few of its signals could be measured"


def _first_per_feature(eligible: list[tuple[str, FeatureWeight]]) -> list[tuple[str, FeatureWeight]]:
    seen: set[str] = set()
    first = []
    for behaviour, spec in eligible:
        if spec.feature not in seen:
            seen.add(spec.feature)
            first.append((behaviour, spec))
    return first


def _baseline(intercept: float) -> dict:
    # A calibrated model's intercept, listed like a feature that is always 1 so the parts still add up.
    return {"feature": "baseline", "behaviour": "calibrated baseline", "modality": None,
            "value": 1.0, "normalised": 1.0, "weight": intercept, "points": intercept}


def _settle(contributions: list[dict]) -> float:
    """Round the points to cents so that they add up exactly to the rounded total; return that total.

    Largest remainder: rounding each part alone could make the total drift past 100.
    """
    raw = [c["points"] for c in contributions]
    cents = [math.floor(p * 100) for p in raw]
    short = round(sum(raw) * 100) - sum(cents)
    for i in sorted(range(len(raw)), key=lambda i: cents[i] - raw[i] * 100)[:short]:
        cents[i] += 1
    for c, value in zip(contributions, cents):
        c["points"] = value / 100
    return round(sum(c["points"] for c in contributions), 2)


def _rank_evidence(items: list[dict]) -> list[dict]:
    # Quotes and episodes first (they point at a moment), then the whole-answer measurements.
    order = {"quote": 0, "episode": 1, "signal": 2}
    ranked = sorted(items, key=lambda e: (order[e["kind"]], e["answer_id"], e["start_s"], e["feature"]))
    seen, unique = set(), []
    for item in ranked:
        key = (item["kind"], item["answer_id"], item["start_s"], item["end_s"], item.get("text"), item.get("signal"))
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique[:MAX_EVIDENCE_PER_COMPETENCY]


def score_answer(
    framework: Framework, inputs: AnswerInputs, policy: str = "default", model: CalibratedModel | None = None
) -> list[dict]:
    """``model``: the framework's calibrated model; its uncalibrated competencies keep the norms."""
    return [
        score_competency(framework, c, inputs, policy, model.competencies.get(c.name) if model else None)
        for c in framework.competencies
    ]


def roll_up(framework: Framework, per_answer: list[list[dict]]) -> list[dict]:
    """An interview's competency = the mean of its scored answers, contribution by contribution."""
    results = []
    for index, competency in enumerate(framework.competencies):
        scored = [answer[index] for answer in per_answer if answer[index]["status"] == "scored"]
        if not scored:
            # One reason shared by every answer (e.g. the policy's) says more than a generic one.
            reasons = {answer[index]["reason"] for answer in per_answer}
            reason = reasons.pop() if len(reasons) == 1 else "no answer had enough evidence"
            results.append(_insufficient(competency, reason))
            continue
        points: dict[tuple[str, str], list] = defaultdict(list)
        meta: dict[tuple[str, str], dict] = {}
        for answer in scored:
            for c in answer["contributions"]:
                key = (c["behaviour"], c["feature"])
                points[key].append(c)
                meta[key] = c
        contributions = []
        for key, items in points.items():
            contributions.append(
                {"feature": key[1], "behaviour": key[0], "modality": meta[key]["modality"],
                 "value": _r(sum(i["value"] for i in items) / len(items)),
                 "normalised": _r(sum(i["normalised"] for i in items) / len(items)),
                 "weight": meta[key]["weight"],
                 "points": sum(i["points"] for i in items) / len(scored)}
            )
        score = _settle(contributions)
        evidence = _rank_evidence([e for answer in scored for e in answer["evidence"]])
        results.append(
            {"name": competency.name, "label": competency.label, "score": score,
             "band": framework.band(score), "status": "scored", "reason": None,
             "coverage": _r(sum(a["coverage"] for a in scored) / len(scored)),
             "answers_scored": len(scored), "contributions": contributions, "evidence": evidence}
        )
    return results
