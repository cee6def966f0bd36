"""Calibrating a framework's competency scores against human ratings, and validating the result.

Per competency: the features are the interview's stored measurements through the framework's
norms (mean over its answers); the target is the mean of its raters' ratings (0..100). A blind
share of the interviews, chosen from a hash of the interview id and the seed, is never used for
fitting or for choosing the ridge strength; on the rest, k-fold cross-validation picks the ridge
strength, then a non-negative ridge (unpenalised intercept) is fitted on all of it, constrained
so that ``0 <= intercept`` and ``intercept + sum(weights) <= 100``: scores stay within 0..100
without clipping. The blind share reports Pearson r and Spearman rho (bootstrap 95 % intervals)
and MAE, for the calibrated model and for the framework's current norms alike.

The gate (``failing``): a model is activated only if every calibrated competency's blind r is
credibly at the bar, not just on average: the lower end of its 95 % interval must reach the bar,
from at least ``MIN_BLIND`` blind interviews.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls
from scipy.stats import rankdata

from poise_fusion.framework import Competency, FeatureWeight, Framework
from poise_fusion.labels import Ratings
from poise_fusion.policy import get_profile
from poise_fusion.scoring_model import (
    CalibratedModel,
    CompetencyModel,
    norms_weights,
    unique_features,
    weighted_points,
)

LAMBDAS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
FOLDS = 5
RESAMPLES = 1000
MIN_LABELLED = 30
# A percentile bootstrap interval of a correlation is too narrow on a handful of pairs (it cannot
# show the spread it never resampled), so below this many blind interviews no interval is trusted.
MIN_BLIND = 20
DEFAULT_HOLDOUT = 0.25
ICC_METHOD = (
    "ICC(2,1) and ICC(2,k): two-way random effects, absolute agreement (Shrout & Fleiss 1979), on the "
    "interviews rated by the most common number k >= 2 of raters; columns are raters when those "
    "interviews share one set of raters, else the k ratings in rater-id order"
)


# -- features ------------------------------------------------------------------------------
UNRECORDED = "unrecorded"


def face_methods(documents: list[dict]) -> dict[str, int]:
    """Answers per way their face signals were measured (``face_method``; ``UNRECORDED`` on
    scorecards from before it was recorded). More than one: the model learns from face features
    measured in different ways, which a report must say."""
    counts: dict[str, int] = {}
    for document in documents:
        for answer in document.get("answers", []):
            method = answer.get("face_method") or UNRECORDED
            counts[method] = counts.get(method, 0) + 1
    return dict(sorted(counts.items()))


def stored_features(framework: Framework, document: dict) -> dict[str, dict[str, float]]:
    """competency -> feature -> the norm's 0..1 value, averaged over the scorecard's answers.

    A feature measured in no answer is left out. Synthetic and stored scorecards both come here.
    """
    result: dict[str, dict[str, float]] = {}
    for competency in framework.competencies:
        values: dict[str, float] = {}
        for spec in unique_features(competency):
            measured = [_normalised(spec, answer.get("signals") or {}) for answer in document.get("answers", [])]
            measured = [v for v in measured if v is not None]
            if measured:
                values[spec.feature] = sum(measured) / len(measured)
        result[competency.name] = values
    return result


def _normalised(spec: FeatureWeight, signals: dict) -> float | None:
    group, _, name = spec.feature.partition(".")
    value = (signals.get(group) or {}).get(name)
    return None if value is None else spec.normalise(float(value))


def predict(model: CompetencyModel, values: dict[str, float], min_coverage: float) -> float | None:
    """An interview's score from its normalised features as fusion computes it; None below min_coverage."""
    features = list(model.weights)
    coverage, points = weighted_points(
        [model.weights[f] for f in features], [values.get(f) for f in features], model.span
    )
    if coverage < min_coverage or all(p is None for p in points):
        return None
    return model.intercept + sum(p for p in points if p is not None)


def norms_model(competency: Competency, allowed: Callable[[FeatureWeight], bool]) -> CompetencyModel:
    """The framework's rule-based scoring in the calibrated form: no intercept, weights over 100 points."""
    weights = norms_weights(competency, allowed)
    total = sum(weights.values())
    return CompetencyModel(0.0, {f: 100.0 * w / total for f, w in weights.items()})


# -- statistics ----------------------------------------------------------------------------
def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x * y).sum(axis=-1) / denominator, np.nan)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(_rowwise_pearson(x, y)) if len(x) >= 3 else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(rankdata(x), rankdata(y)) if len(x) >= 3 else float("nan")


def correlation_with_ci(
    x: Sequence[float], y: Sequence[float], seed: int, resamples: int = RESAMPLES
) -> dict[str, dict]:
    """Pearson r and Spearman rho, each with a percentile bootstrap 95 % interval (pairs resampled)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    result = {"pearson": {"r": _num(pearson(x, y)), "ci": None}, "spearman": {"r": _num(spearman(x, y)), "ci": None}}
    if n < 3:
        return result
    index = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    xs, ys = x[index], y[index]
    samples = {
        "pearson": _rowwise_pearson(xs, ys),
        "spearman": _rowwise_pearson(rankdata(xs, axis=1), rankdata(ys, axis=1)),
    }
    for name, values in samples.items():
        values = values[np.isfinite(values)]
        if len(values):
            result[name]["ci"] = [_num(np.percentile(values, 2.5)), _num(np.percentile(values, 97.5))]
    return result


def icc(matrix: np.ndarray) -> tuple[float, float]:
    """(ICC(2,1), ICC(2,k)) of an interviews x raters matrix with no gaps (Shrout & Fleiss case 2)."""
    n, k = matrix.shape
    grand = matrix.mean()
    ss_rows = k * ((matrix.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((matrix.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((matrix - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    single = msr + (k - 1) * mse + k * (msc - mse) / n
    average = msr + (msc - mse) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return float((msr - mse) / single), float((msr - mse) / average)


def rater_agreement(per_interview: dict[str, dict[str, float]]) -> dict:
    """ICCs of one competency's ratings (interview -> rater -> rating), as ICC_METHOD describes."""
    counts = Counter(len(r) for r in per_interview.values() if len(r) >= 2)
    if not counts:
        return {"icc2_1": None, "icc2_k": None, "raters": None, "interviews": 0, "design": None}
    k = max(counts, key=lambda c: (counts[c], c))
    rated = {i: r for i, r in sorted(per_interview.items()) if len(r) == k}
    same_raters = len({frozenset(r) for r in rated.values()}) == 1
    matrix = np.array([[r[rater] for rater in sorted(r)] for r in rated.values()])
    result = {"icc2_1": None, "icc2_k": None, "raters": k, "interviews": len(rated),
              "design": "same raters" if same_raters else "rater slots"}
    if len(rated) >= 3:
        single, average = icc(matrix)
        result["icc2_1"], result["icc2_k"] = _num(single), _num(average)
    return result


def _num(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


# -- fitting -------------------------------------------------------------------------------
def fit_nonneg_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """(intercept, weights) >= 0 minimising squared error + lam * n * sum((sd_i * w_i)^2), with
    intercept + sum(weights) <= 100. The penalty is on standardised features; the intercept is free.
    """
    n, k = x.shape
    sd = x.std(axis=0)
    penalty = np.sqrt(lam * n) * np.diag(np.where(sd > 1e-9, sd, 1.0))
    design = np.vstack([np.hstack([np.ones((n, 1)), x]), np.hstack([np.zeros((k, 1)), penalty])])
    solution, _ = nnls(design, np.concatenate([y, np.zeros(k)]), maxiter=50 * (k + 1))
    intercept, weights = solution[0], solution[1:]
    if intercept + weights.sum() <= 100.0:
        return float(intercept), weights
    # The ceiling binds (a convex problem's optimum then lies on it): intercept = 100 - sum(weights).
    ceiling = np.vstack([x - 1.0, penalty])
    weights, _ = nnls(ceiling, np.concatenate([y - 100.0, np.zeros(k)]), maxiter=50 * (k + 1))
    if weights.sum() > 100.0:
        # Both bounds bind (intercept 0, weights on the ceiling): rescaled onto it instead of solved.
        weights = weights * (100.0 / weights.sum())
    return float(100.0 - weights.sum()), weights


def _hash_share(seed: int, salt: str, interview_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{interview_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_blind(interview_id: str, seed: int, holdout: float) -> bool:
    """The blind split: the same interview is always on the same side for a given seed."""
    return _hash_share(seed, "blind", interview_id) < holdout


def _folds(ids: list[str], seed: int, folds: int) -> np.ndarray:
    order = sorted(range(len(ids)), key=lambda i: _hash_share(seed, "fold", ids[i]))
    assignment = np.empty(len(ids), dtype=int)
    assignment[order] = np.arange(len(ids)) % folds
    return assignment


def cross_validate(
    x: np.ndarray, y: np.ndarray, ids: list[str], seed: int, folds: int = FOLDS, lambdas: Sequence[float] = LAMBDAS
) -> tuple[float, float]:
    """(ridge strength with the lowest mean squared error over the folds, mean fold r at it)."""
    assignment = _folds(ids, seed, folds)
    best: tuple[float, float, float] | None = None
    for lam in lambdas:
        errors, rs = [], []
        for fold in range(folds):
            test = assignment == fold
            intercept, weights = fit_nonneg_ridge(x[~test], y[~test], lam)
            predicted = intercept + x[test] @ weights
            errors.append(float(np.mean((predicted - y[test]) ** 2)))
            rs.append(pearson(predicted, y[test]))
        mse = float(np.mean(errors))
        if best is None or mse < best[1]:
            best = (lam, mse, float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan"))
    return best[0], best[2]


# -- one competency, then the framework -----------------------------------------------------
@dataclass
class Settings:
    policy: str = "default"
    holdout: float = DEFAULT_HOLDOUT
    seed: int = 0
    min_labelled: int = MIN_LABELLED
    folds: int = FOLDS
    lambdas: Sequence[float] = LAMBDAS
    resamples: int = RESAMPLES


def _blind_figures(predicted: list[float], target: list[float], seed: int, resamples: int) -> dict:
    figures = correlation_with_ci(predicted, target, seed, resamples)
    figures["mae"] = _num(float(np.mean(np.abs(np.subtract(predicted, target))))) if predicted else None
    figures["n"] = len(predicted)
    return figures


def calibrate_competency(
    framework: Framework, competency: Competency, features: dict[str, dict[str, float]], ratings: Ratings,
    settings: Settings,
) -> tuple[CompetencyModel | None, dict]:
    """Fit and validate one competency. ``features``: interview -> feature -> normalised value."""
    profile = get_profile(settings.policy)
    allowed = [s.feature for s in unique_features(competency) if profile.feeds(s)]
    targets = {i: t for i, t in ratings.targets(competency.name).items() if i in features}
    report: dict = {
        "status": "uncalibrated", "reason": None, "features": allowed, "n_labelled": len(targets),
        "agreement": rater_agreement({i: r for i, r in ratings.values.get(competency.name, {}).items() if i in features}),
    }
    if not allowed:
        report["reason"] = f"no feature of it may feed a score under the {settings.policy} policy"
        return None, report
    if len(targets) < settings.min_labelled:
        report["reason"] = f"{len(targets)} labelled interviews, fewer than {settings.min_labelled}"
        return None, report
    blind = sorted(i for i in targets if is_blind(i, settings.seed, settings.holdout))
    train = sorted(set(targets) - set(blind))
    complete = [i for i in train if all(f in features[i] for f in allowed)]
    report.update(n_train=len(complete), n_train_incomplete=len(train) - len(complete), n_blind=len(blind))
    if len(complete) < 2 * settings.folds:
        report["reason"] = f"only {len(complete)} training interviews have every feature measured"
        return None, report
    x = np.array([[features[i][f] for f in allowed] for i in complete])
    y = np.array([targets[i] for i in complete])
    lam, cv_r = cross_validate(x, y, complete, settings.seed, settings.folds, settings.lambdas)
    intercept, weights = fit_nonneg_ridge(x, y, lam)
    model = CompetencyModel(intercept, dict(zip(allowed, (float(w) for w in weights))))
    norms = norms_model(competency, profile.feeds)
    scored = [(i, predict(model, features[i], framework.min_coverage), predict(norms, features[i], framework.min_coverage))
              for i in blind]
    scored = [(i, p, q) for i, p, q in scored if p is not None and q is not None]
    target = [targets[i] for i, _, _ in scored]
    report.update(
        status="calibrated", n_blind_insufficient=len(blind) - len(scored), **{"lambda": lam}, cv_r=_num(cv_r),
        intercept=round(intercept, 4), weights={f: round(w, 4) for f, w in model.weights.items()},
        blind=_blind_figures([p for _, p, _ in scored], target, settings.seed, settings.resamples),
        norms_blind=_blind_figures([q for _, _, q in scored], target, settings.seed, settings.resamples),
    )
    return model, report


def calibrate(
    framework: Framework, documents: dict[str, dict], ratings: Ratings, version: str, settings: Settings | None = None
) -> tuple[CalibratedModel | None, dict]:
    """Calibrate every rated competency of ``framework``; the model is None when none could be."""
    settings = settings or Settings()
    features = {i: stored_features(framework, doc) for i, doc in documents.items()}
    report: dict = {
        "version": version, "framework": framework.name, "framework_version": framework.version,
        "policy": settings.policy, "scale": list(ratings.scale), "holdout": settings.holdout, "seed": settings.seed,
        "folds": settings.folds, "lambdas": list(settings.lambdas), "resamples": settings.resamples,
        "min_labelled": settings.min_labelled, "n_rated_interviews": len(ratings.interviews & set(documents)),
        "face_methods": face_methods([documents[i] for i in sorted(ratings.interviews & set(documents))]),
        "agreement_method": ICC_METHOD, "competencies": {},
    }
    fitted: dict[str, CompetencyModel] = {}
    for competency in framework.competencies:
        if competency.name not in ratings.values:
            report["competencies"][competency.name] = {"status": "uncalibrated", "reason": "no ratings in the file"}
            continue
        per_interview = {i: f[competency.name] for i, f in features.items()}
        model, figures = calibrate_competency(framework, competency, per_interview, ratings, settings)
        report["competencies"][competency.name] = figures
        if model is not None:
            fitted[competency.name] = model
    if not fitted:
        return None, report
    return CalibratedModel(version, framework.name, framework.version, settings.policy, fitted), report


def gate_rule(bar: float, min_blind: int = MIN_BLIND) -> str:
    """The activation rule in words, as the report prints it."""
    return (f"every calibrated competency needs at least {min_blind} blind interviews and the lower end of "
            f"its blind Pearson r's 95 % interval at or above {bar}")


@dataclass(frozen=True)
class Verdict:
    passes: bool
    reason: str


def verdict(figures: dict, bar: float, min_blind: int = MIN_BLIND) -> Verdict:
    """One calibrated competency's verdict under the gate.

    The point estimate alone would pass a model whose r could well be far below the bar: with 11
    blind interviews an r of 0.63 has a 95 % interval of about 0.33..0.86. Its lower end is the
    lowest correlation the blind data still supports, so the claim "r >= bar" is made only when
    that end reaches the bar.
    """
    blind = figures["blind"]
    n, r, ci = blind.get("n", 0), blind["pearson"]["r"], blind["pearson"]["ci"]
    if n < min_blind:
        return Verdict(False, f"{n} blind interviews, fewer than {min_blind}")
    if r is None or ci is None or ci[0] is None:
        return Verdict(False, "no blind r or interval could be computed")
    figure = f"blind r {r:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] from {n} blind interviews: lower end"
    if ci[0] < bar:
        return Verdict(False, f"{figure} below {bar}")
    return Verdict(True, f"{figure} at or above {bar}")


def verdicts(report: dict, bar: float, min_blind: int = MIN_BLIND) -> dict[str, Verdict]:
    """Each calibrated competency's verdict; uncalibrated ones keep their norms and are not judged."""
    return {
        name: verdict(figures, bar, min_blind)
        for name, figures in report["competencies"].items() if figures.get("status") == "calibrated"
    }


def failing(report: dict, bar: float, min_blind: int = MIN_BLIND) -> list[str]:
    """Calibrated competencies that do not pass the gate (``gate_rule``)."""
    return [name for name, judged in verdicts(report, bar, min_blind).items() if not judged.passes]


def apply_gate(report: dict, bar: float, min_blind: int = MIN_BLIND) -> list[str]:
    """Write the gate's rule and each calibrated competency's verdict into ``report``; the failing ones."""
    judged = verdicts(report, bar, min_blind)
    report["gate"] = {"rule": gate_rule(bar, min_blind), "bar": bar, "min_blind": min_blind}
    for name, result in judged.items():
        report["competencies"][name]["verdict"] = {"passes": result.passes, "reason": result.reason}
    return failing(report, bar, min_blind)
