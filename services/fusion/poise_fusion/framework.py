"""Competency frameworks: YAML files that map competencies -> behaviours -> features."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

BUNDLED = Path(__file__).with_name("frameworks")
MODALITIES = ("content", "voice", "face")
SIGNAL_GROUPS = ("vision", "audio", "nlp")


class FrameworkError(ValueError):
    pass


class Norm(BaseModel):
    low: float | None = None
    high: float | None = None
    target: float | None = None
    tolerance: float | None = None


class FeatureWeight(BaseModel):
    feature: str = Field(description="signal group and field, e.g. nlp.filler_rate")
    weight: float = Field(gt=0)
    direction: Literal["higher", "lower", "target"]
    norm: Norm
    modality: Literal["content", "voice", "face"] | None = None
    evidence: list[str] = Field(default_factory=list, description="quotes:<feature> or episodes:<behaviour>")

    @model_validator(mode="after")
    def _check(self) -> "FeatureWeight":
        group, _, name = self.feature.partition(".")
        if group not in SIGNAL_GROUPS or not name:
            raise ValueError(f"feature {self.feature!r} must be vision.*, audio.* or nlp.*")
        if self.modality is None:
            self.modality = {"vision": "face", "audio": "voice", "nlp": "content"}[group]
        if self.direction == "target":
            if self.norm.target is None or not self.norm.tolerance:
                raise ValueError(f"{self.feature}: a target norm needs target and tolerance > 0")
        elif self.norm.low is None or self.norm.high is None or self.norm.high <= self.norm.low:
            raise ValueError(f"{self.feature}: a {self.direction} norm needs low < high")
        for item in self.evidence:
            kind, _, _ = item.partition(":")
            if kind not in ("quotes", "episodes"):
                raise ValueError(f"{self.feature}: evidence {item!r} must be quotes:<x> or episodes:<x>")
        return self

    def normalise(self, value: float) -> float:
        norm = self.norm
        if self.direction == "target":
            return max(0.0, 1.0 - abs(value - norm.target) / norm.tolerance)
        share = (value - norm.low) / (norm.high - norm.low)
        share = min(1.0, max(0.0, share))
        return share if self.direction == "higher" else 1.0 - share


class Behaviour(BaseModel):
    name: str
    features: list[FeatureWeight] = Field(min_length=1)


class Competency(BaseModel):
    name: str
    label: str
    requires: list[Literal["speech", "face"]] = Field(default_factory=list)
    behaviours: list[Behaviour] = Field(min_length=1)

    @property
    def features(self) -> list[FeatureWeight]:
        return [f for b in self.behaviours for f in b.features]


class Band(BaseModel):
    name: str
    below: float


class Framework(BaseModel):
    name: str
    version: str
    description: str = ""
    min_coverage: float = Field(0.5, ge=0, le=1)
    bands: list[Band] = Field(min_length=1)
    competencies: list[Competency] = Field(min_length=1)

    def band(self, score: float) -> str:
        for band in self.bands:
            if score < band.below:
                return band.name
        return self.bands[-1].name


def load_framework_file(path: Path) -> Framework:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FrameworkError(f"{path.name}: not valid YAML: {exc}") from exc
    try:
        return Framework.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise FrameworkError(f"{path.name}: {problems}") from exc


@cache
def _load_dir(folder: Path) -> dict[str, Framework]:
    frameworks = {}
    for path in sorted(folder.glob("*.yaml")):
        framework = load_framework_file(path)
        frameworks[framework.name] = framework
    return frameworks


def available_frameworks(folder: Path | None = None) -> dict[str, Framework]:
    return _load_dir((folder or BUNDLED).resolve())


def get_framework(role: str, folder: Path | None = None) -> Framework:
    frameworks = available_frameworks(folder)
    if role not in frameworks:
        raise FrameworkError(f"unknown role {role!r}; known roles: {', '.join(sorted(frameworks))}")
    return frameworks[role]
