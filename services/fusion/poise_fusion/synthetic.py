"""Synthetic interviews with known truth, for testing calibration and bias audits.

How a set is generated (``generate``), all from ``seed``:

1. Population (the same for every ``n_interviews``): each feature of the framework gets a
   Beta(a, b) distribution of its normalised value, a and b uniform in 1.5..4. Each competency
   gets an intercept (uniform 5..20 points) and a span (uniform 55..80 points, so intercept +
   span <= 100); the span is shared out over the competency's features in proportion to the
   framework's weight times a factor uniform in 0.3..1.7, so the generating weights differ from
   the framework's. Each rater gets a bias, normal with sd ``RATER_BIAS_SD`` scale points.
2. Interview ``i`` (its own random stream, so the first n interviews of a larger set are the
   same interviews): sex female 47 %, male 45 %, not said 8 %; race/ethnicity at roughly US
   labour-force shares, not said 10 %. Each feature's normalised value is drawn from its Beta,
   and a raw value is backed out within the norm of the feature's first use in the framework
   (for a "target" norm, above or below the target at random); each competency's normalised
   values are that raw value through the competency's own norm, as scoring computes them.
   A ``disparity`` is injected into the measurements, as a feature that disadvantages a group
   would be: each normalised value of an interview in a shifted group moves by
   points / ``DISPARITY_SPAN`` (clipped to 0..1) before its raw value is backed out, so the
   group's generating scores, and the scores fusion computes from its signals, move by about
   that many points.
3. True score = intercept + sum(weight * normalised), clipped to 0..100.
4. Each rater's rating = the true score mapped linearly to the 1..5 scale + the rater's bias +
   normal noise (sd ``rater_noise`` scale points), rounded to the scale's 0.5 step and clipped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poise_fusion.assemble import build_scorecard
from poise_fusion.audit import CATEGORIES, RACE_ETHNICITY, SEX
from poise_fusion.framework import FeatureWeight, Framework
from poise_fusion.labels import DEFAULT_SCALE
from poise_fusion.scoring import AnswerInputs, score_answer
from poise_fusion.scoring_model import unique_features

RATER_BIAS_SD = 0.15
# A typical competency's weights add up to its span (55..80 points): moving every normalised
# value by d moves its score by about d * 67 points.
DISPARITY_SPAN = 67.0
RATING_STEP = 0.5
SEX_SHARES = {"female": 0.47, "male": 0.45, None: 0.08}
# Roughly the US labour force; what is left after the known shares is "did not say".
RACE_SHARES = {
    "White": 0.55, "Hispanic or Latino": 0.16, "Black or African American": 0.11, "Asian": 0.06,
    "Two or More Races": 0.015, "Native American or Alaska Native": 0.01, "Native Hawaiian or Pacific Islander": 0.005,
}


@dataclass
class SyntheticInterview:
    interview_id: str
    sex: str | None  # "female" | "male" | None (did not say)
    race_ethnicity: str | None  # one of poise_fusion.audit.RACE_ETHNICITY or None
    signals: dict[str, dict[str, float]]  # "vision"|"audio"|"nlp" -> raw feature values
    normalised: dict[str, dict[str, float]]  # competency -> feature -> normalised 0..1
    true_scores: dict[str, float]  # competency -> noise-free generating score 0..100 (disparity included)
    ratings: list[dict[str, float]]  # one dict per rater: competency -> rating on the 1..5 scale


@dataclass
class SyntheticSet:
    framework: str
    interviews: list[SyntheticInterview]
    weights: dict[str, dict[str, float]]  # competency -> feature -> generating points weight (>= 0)
    intercepts: dict[str, float]  # competency -> intercept (points)
    framework_spec: Framework  # the framework generated for, which scorecards() scores with

    def write_labels_csv(self, path: Path, scale: tuple[float, float] = DEFAULT_SCALE) -> None:
        """One row per (interview, rater), ratings mapped linearly from 1..5 onto ``scale``."""
        low, high = DEFAULT_SCALE
        competencies = list(self.weights)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["interview_id", "rater_id", *competencies])
            for interview in self.interviews:
                for index, rating in enumerate(interview.ratings):
                    mapped = [scale[0] + (rating[c] - low) * (scale[1] - scale[0]) / (high - low) for c in competencies]
                    writer.writerow([interview.interview_id, f"r{index + 1}", *(f"{round(v, 6):g}" for v in mapped)])

    def scorecards(self) -> list[dict]:
        """Scorecards as fusion stores them (one answer each), scored with the framework's norms."""
        framework = self.framework_spec
        cards = []
        for interview in self.interviews:
            inputs = AnswerInputs(
                answer_id=f"{interview.interview_id}-q1", question_id="q1", duration_s=60.0, signals=interview.signals
            )
            answer = {"answer_id": inputs.answer_id, "question_id": "q1", "signals": interview.signals,
                      "competencies": score_answer(framework, inputs), "warnings": []}
            bundle = {"interview_id": interview.interview_id, "tenant": "synthetic", "role": framework.name,
                      "questions": [{"question_id": "q1", "text": ""}], "answers": [answer]}
            cards.append(build_scorecard(bundle, framework))
        return cards


def _check_disparity(disparity: dict[str, float]) -> list[tuple[str, str, float]]:
    shifts = []
    for key, points in disparity.items():
        attribute, _, value = key.partition("=")
        if attribute not in CATEGORIES or value not in CATEGORIES[attribute]:
            raise ValueError(f"disparity key {key!r} must be sex=<{'|'.join(SEX)}> or race_ethnicity=<a category>")
        shifts.append((attribute, value, float(points)))
    return shifts


def _raw_value(spec: FeatureWeight, normalised: float, rng: np.random.Generator) -> float:
    norm = spec.norm
    if spec.direction == "target":
        side = 1.0 if rng.random() < 0.5 else -1.0
        return norm.target + side * (1.0 - normalised) * norm.tolerance
    share = normalised if spec.direction == "higher" else 1.0 - normalised
    return norm.low + share * (norm.high - norm.low)


def _draw(rng: np.random.Generator, shares: dict) -> str | None:
    options = list(shares)
    probabilities = np.array([shares[o] for o in options], float)
    return options[rng.choice(len(options), p=probabilities / probabilities.sum())]


def generate(
    framework: Framework, n_interviews: int, *, raters: int = 3, rater_noise: float = 0.35,
    disparity: dict[str, float] | None = None, seed: int = 0,
) -> SyntheticSet:
    """A synthetic set as the module docstring describes."""
    shifts = _check_disparity(disparity or {})
    population = np.random.default_rng([seed, 0])
    primary: dict[str, FeatureWeight] = {}
    for competency in framework.competencies:
        for spec in competency.features:
            primary.setdefault(spec.feature, spec)
    shapes = {f: population.uniform(1.5, 4.0, size=2) for f in primary}
    weights: dict[str, dict[str, float]] = {}
    intercepts: dict[str, float] = {}
    for competency in framework.competencies:
        intercept = float(population.uniform(5, 20))
        span = float(min(population.uniform(55, 80), 100 - intercept))
        raw = {s.feature: s.weight * population.uniform(0.3, 1.7) for s in unique_features(competency)}
        intercepts[competency.name] = intercept
        weights[competency.name] = {f: span * w / sum(raw.values()) for f, w in raw.items()}
    biases = population.normal(0.0, RATER_BIAS_SD, size=raters)
    race_shares = {c: RACE_SHARES[c] for c in RACE_ETHNICITY} | {None: 1.0 - sum(RACE_SHARES.values())}

    interviews = []
    for index in range(n_interviews):
        rng = np.random.default_rng([seed, 1, index])
        sex, race = _draw(rng, SEX_SHARES), _draw(rng, race_shares)
        shift = sum(p for attribute, value, p in shifts if {"sex": sex, "race_ethnicity": race}[attribute] == value)
        signals: dict[str, dict[str, float]] = {"vision": {}, "audio": {}, "nlp": {}}
        for feature, spec in primary.items():
            group, _, name = feature.partition(".")
            drawn = float(rng.beta(*shapes[feature]))
            shifted = min(1.0, max(0.0, drawn + shift / DISPARITY_SPAN))
            signals[group][name] = _raw_value(spec, shifted, rng)
        normalised, true_scores = {}, {}
        for competency in framework.competencies:
            values = {}
            for spec in unique_features(competency):
                group, _, name = spec.feature.partition(".")
                values[spec.feature] = spec.normalise(signals[group][name])
            score = intercepts[competency.name] + sum(w * values[f] for f, w in weights[competency.name].items())
            normalised[competency.name] = values
            true_scores[competency.name] = float(np.clip(score, 0.0, 100.0))
        ratings = [_ratings(true_scores, float(bias), rater_noise, rng) for bias in biases]
        interviews.append(
            SyntheticInterview(f"syn-{seed}-{index:05d}", sex, race, signals, normalised, true_scores, ratings)
        )
    return SyntheticSet(framework.name, interviews, weights, intercepts, framework_spec=framework)


def _ratings(true_scores: dict[str, float], bias: float, noise: float, rng: np.random.Generator) -> dict[str, float]:
    low, high = DEFAULT_SCALE
    result = {}
    for competency, score in true_scores.items():
        value = low + (high - low) * score / 100.0 + bias + rng.normal(0.0, noise)
        value = low + RATING_STEP * round((value - low) / RATING_STEP)
        result[competency] = float(min(high, max(low, value)))
    return result
