"""Calibrated scoring models: their parameters, the one formula that turns them into points, and their table.

A competency's calibrated score is ``intercept + sum(beta_i * n_i)`` over its features' normalised
values ``n_i`` (0..1), with every ``beta_i >= 0``, ``intercept >= 0`` and ``intercept + sum(beta) <= 100``,
so a score stays within 0..100 without clipping. When some features could not be measured, the
measured betas are scaled by ``sum(beta) / sum(beta measured)``, as the framework's own norms are
renormalised. The rule-based norms are the same formula with intercept 0 and the framework's
weights spread over 100 points.

A model belongs to the tenant whose raters it was fitted to and scores only that tenant's
candidates: another customer's raters (and their biases) never move a candidate's score.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from poise_common.db.models import ScoringModel
from poise_fusion.framework import Competency, FeatureWeight, Framework

CACHE_S = 5.0
_CAL_SUFFIX = re.compile(r"\+cal\.(\d+)$")


class ModelError(ValueError):
    pass


def weighted_points(
    weights: Sequence[float], normalised: Sequence[float | None], span: float
) -> tuple[float, list[float | None]]:
    """(coverage, points per feature): ``span`` points spread over the measured features by weight.

    ``normalised`` None = not measured (its points are None). Coverage is the share of the weight
    that was measured; a model whose weights are all zero is a constant and fully covered.
    """
    total = sum(weights)
    used = sum(w for w, n in zip(weights, normalised) if n is not None)
    measured = any(n is not None for n in normalised)
    coverage = used / total if total else float(measured)
    points = [None if n is None else (span * w * n / used if used else 0.0) for w, n in zip(weights, normalised)]
    return coverage, points


@dataclass(frozen=True)
class CompetencyModel:
    """One competency's calibrated parameters: an intercept and a weight (points at 1.0) per feature."""

    intercept: float
    weights: dict[str, float]

    @property
    def span(self) -> float:
        return sum(self.weights.values())


def unique_features(competency: Competency) -> list[FeatureWeight]:
    """The competency's features in order; a feature listed twice is one measurement, its first spec applies."""
    seen: dict[str, FeatureWeight] = {}
    for spec in competency.features:
        seen.setdefault(spec.feature, spec)
    return list(seen.values())


def norms_weights(competency: Competency, allowed: Callable[[FeatureWeight], bool]) -> dict[str, float]:
    """The framework's weight per feature, of the features ``allowed`` to feed a score."""
    return {spec.feature: spec.weight for spec in unique_features(competency) if allowed(spec)}


@dataclass(frozen=True)
class CalibratedModel:
    version: str
    framework: str
    framework_version: str
    policy: str
    competencies: dict[str, CompetencyModel]  # calibrated ones; the others keep the framework's norms

    def parameters(self) -> dict:
        return {
            "policy": self.policy,
            "competencies": {
                name: {"intercept": m.intercept, "weights": dict(m.weights)} for name, m in self.competencies.items()
            },
        }

    @classmethod
    def from_row(cls, row: ScoringModel) -> "CalibratedModel":
        params = row.parameters
        return cls(
            version=row.version, framework=row.framework, framework_version=row.framework_version,
            policy=params.get("policy", "default"),
            competencies={
                name: CompetencyModel(float(p["intercept"]), {f: float(w) for f, w in p["weights"].items()})
                for name, p in params["competencies"].items()
            },
        )


@dataclass
class ModelRecord:
    """A stored model with its tenant (None: it scores no one), state and validation report."""

    tenant: str | None
    model: CalibratedModel
    report: dict
    active: bool
    forced: bool
    created_at: float
    activated_at: float | None = None

    @property
    def version(self) -> str:
        return self.model.version


def _record(row: ScoringModel) -> ModelRecord:
    return ModelRecord(
        tenant=row.tenant, model=CalibratedModel.from_row(row), report=row.report, active=row.active, forced=row.forced,
        created_at=row.created_at, activated_at=row.activated_at,
    )


@dataclass
class ModelStore:
    """Scoring models in the database; at most one active per (tenant, framework).

    ``active`` is read for every answer fusion scores, so it is cached for ``cache_s`` seconds:
    a model activated by another process takes effect within that time, without a restart.
    Versions are numbered across tenants, so a scorecard's version names exactly one model.
    """

    sessions: sessionmaker
    cache_s: float = CACHE_S
    clock: Callable[[], float] = time.monotonic
    _cache: dict[tuple[str, str], tuple[float, CalibratedModel | None]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next_version(self, framework: Framework) -> str:
        with self.sessions() as session:
            versions = session.scalars(select(ScoringModel.version).where(ScoringModel.framework == framework.name))
            numbers = [int(m.group(1)) for v in versions if (m := _CAL_SUFFIX.search(v))]
        return f"{framework.name}@{framework.version}+cal.{max(numbers, default=0) + 1}"

    def save(self, tenant: str, model: CalibratedModel, report: dict) -> None:
        """Store a new model of ``tenant``, inactive (``activate`` makes it the tenant's model of its framework)."""
        with self.sessions.begin() as session:
            session.add(
                ScoringModel(
                    version=model.version, tenant=tenant, framework=model.framework,
                    framework_version=model.framework_version,
                    parameters=model.parameters(), report=report, active=False, forced=False,
                )
            )

    def get(self, version: str) -> ModelRecord | None:
        with self.sessions() as session:
            row = session.get(ScoringModel, version)
            return None if row is None else _record(row)

    def list(self, tenant: str | None, framework: str | None = None) -> list[ModelRecord]:
        """``tenant``'s models (None: every tenant's, and those of no tenant), oldest first per framework."""
        with self.sessions() as session:
            query = select(ScoringModel).order_by(ScoringModel.framework, ScoringModel.created_at)
            if tenant is not None:
                query = query.where(ScoringModel.tenant == tenant)
            if framework:
                query = query.where(ScoringModel.framework == framework)
            return [_record(row) for row in session.scalars(query)]

    def activate(self, tenant: str, version: str, forced: bool = False) -> None:
        """Make ``version``, a model of ``tenant``, the tenant's only active model of its framework."""
        with self.sessions.begin() as session:
            row = session.scalar(
                select(ScoringModel).where(ScoringModel.version == version, ScoringModel.tenant == tenant)
                .with_for_update()
            )
            if row is None:
                raise ModelError(f"no scoring model {version} of tenant {tenant}")
            session.execute(
                update(ScoringModel).where(
                    ScoringModel.tenant == tenant, ScoringModel.framework == row.framework,
                    ScoringModel.version != version,
                ).values(active=False)
            )
            row.active, row.forced, row.activated_at = True, forced, time.time()
            framework = row.framework
        self._forget(tenant, framework)

    def deactivate(self, tenant: str, framework: str) -> list[str]:
        """Back to the framework's norms for ``tenant``. Returns the versions that were active."""
        with self.sessions.begin() as session:
            rows = list(session.scalars(select(ScoringModel).where(
                ScoringModel.tenant == tenant, ScoringModel.framework == framework, ScoringModel.active.is_(True)
            )))
            for row in rows:
                row.active = False
            versions = [row.version for row in rows]
        self._forget(tenant, framework)
        return versions

    def active(self, tenant: str, framework: Framework) -> CalibratedModel | None:
        """``tenant``'s active model of the framework, if it was calibrated for this version of the framework."""
        key = (tenant, framework.name)
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None or cached[0] <= now:
            cached = (now + self.cache_s, self._load_active(tenant, framework.name))
            with self._lock:
                self._cache[key] = cached
        model = cached[1]
        return model if model is not None and model.framework_version == framework.version else None

    def _load_active(self, tenant: str, framework: str) -> CalibratedModel | None:
        with self.sessions() as session:
            row = session.scalar(select(ScoringModel).where(
                ScoringModel.tenant == tenant, ScoringModel.framework == framework, ScoringModel.active.is_(True)
            ))
            return None if row is None else CalibratedModel.from_row(row)

    def _forget(self, tenant: str, framework: str) -> None:
        with self._lock:
            self._cache.pop((tenant, framework), None)
