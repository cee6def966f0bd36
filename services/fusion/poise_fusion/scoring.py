"""Turn one answer's signals into competency scores with contributions and evidence.

Pure functions: the same inputs always give the same scorecard, which is what lets a
replayed or re-run interview be compared exactly with the first run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from poise_fusion.framework import Competency, FeatureWeight, Framework

MAX_EVIDENCE_PER_FEATURE = 3
MAX_EVIDENCE_PER_COMPETENCY = 8
# Modalities a policy profile lets feed scores. Face and voice stay measured and reported either way.
POLICY_MODALITIES = {"default": {"content", "voice", "face"}}


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


def _evidence_for(inputs: AnswerInputs, spec: FeatureWeight, value: float) -> list[dict]:
    items: list[dict] = []
    for source in spec.evidence:
        kind, _, name = source.partition(":")
        if kind == "quotes":
            matches = [q for q in inputs.quotes if q["feature"] == name]
            items += [
                {"kind": "quote", "feature": spec.feature, "answer_id": inputs.answer_id,
                 "question_id": inputs.question_id, "start_s": _r(q["start_s"], 2),
                 "end_s": _r(q["end_s"], 2), "text": q["text"]}
                for q in matches[:MAX_EVIDENCE_PER_FEATURE]
            ]
        else:
            matches = [e for e in inputs.episodes if e["behaviour"] == name]
            items += [
                {"kind": "episode", "feature": spec.feature, "answer_id": inputs.answer_id,
                 "question_id": inputs.question_id, "start_s": _r(e["start_s"], 2),
                 "end_s": _r(e["end_s"], 2), "signal": name, "peak": _r(e.get("peak"))}
                for e in matches[:MAX_EVIDENCE_PER_FEATURE]
            ]
    # The measurement itself is always evidence: which signal, what value, over which time.
    items.append(
        {"kind": "signal", "feature": spec.feature, "answer_id": inputs.answer_id,
         "question_id": inputs.question_id, "start_s": 0.0, "end_s": _r(inputs.duration_s, 2),
         "signal": spec.feature, "value": _r(value)}
    )
    return items


def _insufficient(competency: Competency, reason: str) -> dict:
    return {
        "name": competency.name, "label": competency.label, "score": None,
        "band": "insufficient_evidence", "status": "insufficient_evidence", "reason": reason,
        "coverage": 0.0, "contributions": [], "evidence": [],
    }


def score_competency(
    framework: Framework, competency: Competency, inputs: AnswerInputs, policy: str = "default"
) -> dict:
    allowed = POLICY_MODALITIES[policy]
    if "speech" in competency.requires and not inputs.has_speech:
        return _insufficient(competency, "no speech in the answer")
    if "face" in competency.requires and not inputs.has_face:
        return _insufficient(competency, "no face in the answer")
    eligible = [(b.name, f) for b in competency.behaviours for f in b.features if f.modality in allowed]
    total_weight = sum(f.weight for _, f in eligible)
    measured = [(b, f, feature_value(inputs, f.feature)) for b, f in eligible]
    measured = [(b, f, v) for b, f, v in measured if v is not None]
    used_weight = sum(f.weight for _, f, _ in measured)
    coverage = used_weight / total_weight if total_weight else 0.0
    if not measured or coverage < framework.min_coverage:
        result = _insufficient(competency, "too few of its signals could be measured")
        result["coverage"] = _r(coverage)
        return result
    contributions, evidence = [], []
    for behaviour, spec, value in measured:
        normalised = spec.normalise(value)
        contributions.append(
            {"feature": spec.feature, "behaviour": behaviour, "modality": spec.modality,
             "value": _r(value), "normalised": _r(normalised), "weight": spec.weight,
             "points": 100.0 * spec.weight * normalised / used_weight}
        )
        evidence += _evidence_for(inputs, spec, value)
    score = sum(c["points"] for c in contributions)
    for c in contributions:
        c["points"] = _r(c["points"], 2)
    score = round(sum(c["points"] for c in contributions), 2)  # the listed parts add up exactly
    return {
        "name": competency.name, "label": competency.label, "score": score,
        "band": framework.band(score), "status": "scored", "reason": None,
        "coverage": _r(coverage), "contributions": contributions,
        "evidence": _rank_evidence(evidence),
    }


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


def score_answer(framework: Framework, inputs: AnswerInputs, policy: str = "default") -> list[dict]:
    return [score_competency(framework, c, inputs, policy) for c in framework.competencies]


def roll_up(framework: Framework, per_answer: list[list[dict]]) -> list[dict]:
    """An interview's competency = the mean of its scored answers, contribution by contribution."""
    results = []
    for index, competency in enumerate(framework.competencies):
        scored = [answer[index] for answer in per_answer if answer[index]["status"] == "scored"]
        if not scored:
            results.append(_insufficient(competency, "no answer had enough evidence"))
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
                 "points": round(sum(i["points"] for i in items) / len(scored), 2)}
            )
        score = round(sum(c["points"] for c in contributions), 2)
        evidence = _rank_evidence([e for answer in scored for e in answer["evidence"]])
        results.append(
            {"name": competency.name, "label": competency.label, "score": score,
             "band": framework.band(score), "status": "scored", "reason": None,
             "coverage": _r(sum(a["coverage"] for a in scored) / len(scored)),
             "answers_scored": len(scored), "contributions": contributions, "evidence": evidence}
        )
    return results
