"""Bias audit of scores by sex, race/ethnicity and both (NYC Local Law 144 style), as pure computation.

Scoring rate (the default): the share of a category whose score is strictly above the median
score of the whole sample, unknown categories included. Selection rate: the share scoring at or
above a threshold the user gives. Impact ratio: a category's rate over the highest rate among the
categories kept in the audit; less than four-fifths is the EEOC four-fifths rule's sign of adverse
impact (29 CFR 1607.4(D)), decided on the exact fractions of the counts: 2/3 over 5/6 is 4/5, not
below it, although the floating-point quotient prints 0.7999999999999999.
A category under ``min_share`` of the sample (2 % by default) may be left out, with its reason.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from fractions import Fraction

SEX = ("female", "male")
RACE_ETHNICITY = (
    "Hispanic or Latino",
    "White",
    "Black or African American",
    "Native Hawaiian or Pacific Islander",
    "Asian",
    "Native American or Alaska Native",
    "Two or More Races",
)
CATEGORIES = {"sex": SEX, "race_ethnicity": RACE_ETHNICITY}
MODES = ("scoring_rate", "selection_rate")
DEFAULT_MIN_SHARE = 0.02
# The rule's threshold is exact; the float is what reports print.
FOUR_FIFTHS_EXACT = Fraction(4, 5)
FOUR_FIFTHS = float(FOUR_FIFTHS_EXACT)
OVERALL = "overall"
# What a candidate may answer instead of a category; all of them mean "did not say".
NOT_SAID = frozenset({"", "unknown", "decline"})
INTERSECTION = " / "


class AuditError(ValueError):
    pass


@dataclass(frozen=True)
class AuditRecord:
    """One scored interview: its score for what is audited and the self-reported categories."""

    interview_id: str
    score: float
    sex: str | None
    race_ethnicity: str | None


@dataclass
class CategoryResult:
    category: str
    count: int
    share: float  # of the whole sample, unknown categories included
    passed: int  # above the median (scoring_rate) or at/above the threshold (selection_rate)
    rate: float | None  # None for a category nobody is in
    impact_ratio: float | None  # None when excluded or when no kept category has a positive rate
    four_fifths: bool  # passed/count over the highest rate is less than 4/5, compared exactly
    excluded: bool
    exclusion_reason: str | None


@dataclass
class DimensionResult:
    unknown: int  # records without a category in this dimension
    highest_rate: float | None
    categories: list[CategoryResult]


@dataclass
class AuditResult:
    audit_date: str
    data_source: str
    role: str
    competency: str  # a competency's name, or "overall" (mean of the scored competencies)
    mode: str
    sample_size: int
    unscored: int  # interviews of the role without a score for what is audited, not in the sample
    median: float
    threshold: float | None
    min_share: float
    four_fifths_ratio: float
    dimensions: dict[str, DimensionResult]
    flags: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        """Plain JSON-ready data; keys are only ever added."""
        return asdict(self)


def normalise_category(dimension: str, value: str | None) -> str | None:
    """The canonical spelling of ``value`` (case-insensitive), None for unknown/decline/empty."""
    if value is None or value.strip().lower() in NOT_SAID:
        return None
    allowed = CATEGORIES[dimension]
    wanted = " ".join(value.split()).lower()
    for category in allowed:
        if category.lower() == wanted:
            return category
    raise AuditError(
        f"{dimension} must be one of {', '.join(repr(c) for c in allowed)}, or 'unknown'/'decline' (got {value!r})"
    )


def subject_score(document: dict, competency: str | None) -> float | None:
    """A scorecard's score for ``competency``, or for None the mean of its scored competencies."""
    scores = {
        c.get("name"): float(c["score"])
        for c in document.get("competencies") or []
        if c.get("score") is not None and c.get("status", "scored") == "scored"
    }
    if competency is None or competency == OVERALL:
        return statistics.fmean(scores.values()) if scores else None
    return scores.get(competency)


def intersection(sex: str | None, race_ethnicity: str | None) -> str | None:
    return None if sex is None or race_ethnicity is None else f"{sex}{INTERSECTION}{race_ethnicity}"


def percent(share: float) -> str:
    """A share as a short percentage: 0.02 -> 2%."""
    return f"{share * 100:g}%"


def _check(records: Sequence[AuditRecord], mode: str, threshold: float | None, min_share: float) -> None:
    if mode not in MODES:
        raise AuditError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if mode == "selection_rate" and (threshold is None or not math.isfinite(threshold)):
        raise AuditError("the selection_rate mode needs a threshold: the score at or above which a candidate passes")
    if mode == "scoring_rate" and threshold is not None:
        raise AuditError("a threshold applies only to the selection_rate mode; scoring_rate uses the sample's median")
    if not 0 <= min_share < 1:
        raise AuditError(f"min_share must be at least 0 and below 1 (got {min_share})")
    if not records:
        raise AuditError("the sample is empty: no scored interviews to audit")
    seen: set[str] = set()
    for r in records:
        if r.interview_id in seen:
            raise AuditError(f"interview {r.interview_id} appears twice in the sample")
        seen.add(r.interview_id)
        if not math.isfinite(r.score):
            raise AuditError(f"interview {r.interview_id} has a score that is not a finite number")
        if r.sex is not None and r.sex not in SEX:
            raise AuditError(f"interview {r.interview_id}: sex {r.sex!r} is not one of {', '.join(SEX)}")
        if r.race_ethnicity is not None and r.race_ethnicity not in RACE_ETHNICITY:
            raise AuditError(
                f"interview {r.interview_id}: race/ethnicity {r.race_ethnicity!r} is not an audit category"
            )


def _dimension(
    name: str, members: list[tuple[str | None, bool]], categories: Iterable[str], min_share: float,
    ratio_floor: Fraction, flags: list[dict],
) -> DimensionResult:
    """Counts, rates and impact ratios for one dimension; ``members`` is (category, passed) per record."""
    size = len(members)
    rows: list[CategoryResult] = []
    for category in categories:
        outcomes = [passed for c, passed in members if c == category]
        count, passed = len(outcomes), sum(outcomes)
        share = count / size
        reason = None
        if count == 0:
            reason = "no one in the sample"
        elif share < min_share:
            reason = f"{count} of {size} ({share:.1%}), under the {percent(min_share)} minimum share"
        rows.append(CategoryResult(
            category=category, count=count, share=share, passed=passed, rate=passed / count if count else None,
            impact_ratio=None, four_fifths=False, excluded=reason is not None, exclusion_reason=reason,
        ))
    kept = [row for row in rows if not row.excluded]
    highest = max((row.rate for row in kept), default=None)
    if highest is None:
        flags.append({"code": "no_category_kept", "dimension": name, "category": None,
                      "message": f"{name}: every category is excluded or unknown; no impact ratios"})
    elif highest == 0:
        # A ratio to a zero rate is undefined: nobody in any kept category passed.
        flags.append({"code": "no_positive_rate", "dimension": name, "category": None,
                      "message": f"{name}: no category has a positive rate; impact ratios are undefined"})
    else:
        highest_exact = max(_exact_rate(row) for row in kept)
        for row in kept:
            row.impact_ratio = row.rate / highest
            row.four_fifths = _exact_rate(row) / highest_exact < ratio_floor
            if row.four_fifths:
                flags.append({
                    "code": "four_fifths", "dimension": name, "category": row.category,
                    "message": f"{name}: {row.category} has an impact ratio of {row.impact_ratio:.3f}, "
                               f"below {float(ratio_floor):g} (four-fifths rule)",
                })
    unknown = sum(1 for c, _ in members if c is None)
    return DimensionResult(unknown=unknown, highest_rate=highest, categories=rows)


def _exact_rate(row: CategoryResult) -> Fraction:
    """The category's rate as the fraction of its counts, free of floating-point rounding."""
    return Fraction(row.passed, row.count)


def run_audit(
    records: Sequence[AuditRecord],
    *,
    role: str,
    competency: str | None = None,
    mode: str = "scoring_rate",
    threshold: float | None = None,
    min_share: float = DEFAULT_MIN_SHARE,
    data_source: str = "",
    audit_date: date | None = None,
    unscored: int = 0,
) -> AuditResult:
    """Audit ``records``; raises AuditError for an empty sample or inconsistent options."""
    _check(records, mode, threshold, min_share)
    median = statistics.median(r.score for r in records)
    if mode == "scoring_rate":
        passed = [r.score > median for r in records]
    else:
        passed = [r.score >= threshold for r in records]
    flags: list[dict] = []
    intersections = [intersection(s, r) for s in SEX for r in RACE_ETHNICITY]
    by_dimension = {
        "sex": ([r.sex for r in records], SEX),
        "race_ethnicity": ([r.race_ethnicity for r in records], RACE_ETHNICITY),
        "intersectional": ([intersection(r.sex, r.race_ethnicity) for r in records], intersections),
    }
    dimensions = {
        name: _dimension(name, list(zip(values, passed)), categories, min_share, FOUR_FIFTHS_EXACT, flags)
        for name, (values, categories) in by_dimension.items()
    }
    return AuditResult(
        audit_date=(audit_date or date.today()).isoformat(), data_source=data_source, role=role,
        competency=competency or OVERALL, mode=mode, sample_size=len(records), unscored=unscored,
        median=median, threshold=threshold, min_share=min_share, four_fifths_ratio=FOUR_FIFTHS,
        dimensions=dimensions, flags=flags,
    )
