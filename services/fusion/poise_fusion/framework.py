"""Competency frameworks: YAML files that map competencies -> behaviours -> features.

A file is checked as a whole: every problem is reported with its line, the path of the
offending field and what is wrong (see docs/frameworks/README.md for how to write one).
"""

from __future__ import annotations

import math
import typing
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from poise_fusion.framework_schema import (
    Loc,
    Problem,
    evidence_sources,
    path_text,
    read_yaml,
    signal_features,
    unknown_name,
)

BUNDLED = Path(__file__).with_name("frameworks")
MODALITIES = ("content", "voice", "face")
# The modality each signal group measures: a feature's default, and what policy profiles check it against.
GROUP_MODALITY = {"nlp": "content", "audio": "voice", "vision": "face"}
_ERROR = "framework"  # the pydantic error type of the checks below


class FrameworkError(ValueError):
    """A framework that cannot be used; ``problems`` holds each one found in its file."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def _problem(message: str) -> PydanticCustomError:
    # Through the context, so that braces in a quoted value are never read as a template.
    return PydanticCustomError(_ERROR, "{message}", {"message": message})


def _known_feature(value: str) -> str:
    if value not in signal_features():
        raise _problem(unknown_name("signal feature", value, signal_features()))
    return value


def _known_evidence(value: str) -> str:
    if value not in evidence_sources():
        raise _problem(unknown_name("evidence", value, evidence_sources()))
    return value


def _list_features(schema: dict[str, Any]) -> None:
    schema["enum"] = list(signal_features())


def _list_evidence(schema: dict[str, Any]) -> None:
    schema["items"]["enum"] = list(evidence_sources())


class _Strict(BaseModel):
    # A misspelt key would otherwise be dropped without a word and its default used.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Norm(_Strict):
    """How a raw measurement becomes 0..1 (see FeatureWeight.direction)."""

    low: float | None = Field(None, description="higher/lower: the value at which the share starts to change.")
    high: float | None = Field(None, description="higher/lower: the value at which it stops changing.")
    target: float | None = Field(None, description="target: the value that scores 1.")
    tolerance: float | None = Field(None, description="target: the distance from target that scores 0.")


def _norm_by_direction(schema: dict[str, Any]) -> None:
    # The schema's way of saying which norm keys each direction needs (editors check it as you type).
    schema["if"] = {"properties": {"direction": {"const": "target"}}}
    schema["then"] = {"properties": {"norm": {"required": ["target", "tolerance"]}}}
    schema["else"] = {"properties": {"norm": {"required": ["low", "high"]}}}


class FeatureWeight(_Strict):
    """One measurement of a behaviour, with its weight and norm."""

    model_config = ConfigDict(json_schema_extra=_norm_by_direction)

    feature: Annotated[str, AfterValidator(_known_feature)] = Field(
        description="signal group and field, e.g. nlp.filler_rate", json_schema_extra=_list_features
    )
    weight: float = Field(gt=0, description="Relative weight within the competency.")
    direction: Literal["higher", "lower", "target"] = Field(description="Which raw values are better.")
    norm: Norm
    modality: Literal["content", "voice", "face"] | None = Field(
        None, description="What the policy profiles filter on; by default from the group (nlp: content, "
        "audio: voice, vision: face)."
    )
    evidence: list[Annotated[str, AfterValidator(_known_evidence)]] = Field(
        default_factory=list, description="quotes:<feature> or episodes:<behaviour> shown with the score",
        json_schema_extra=_list_evidence,
    )

    @field_validator("norm")
    @classmethod
    def _norm_fits_direction(cls, norm: Norm, info: ValidationInfo) -> Norm:
        direction = info.data.get("direction")  # absent when the direction itself is invalid
        if direction == "target":
            if norm.target is None or norm.tolerance is None or norm.tolerance <= 0:
                raise _problem("a target norm needs target and tolerance > 0")
            if norm.low is not None or norm.high is not None:
                raise _problem("a target norm takes target and tolerance, not low and high")
        elif direction in ("higher", "lower"):
            if norm.low is None or norm.high is None or norm.high <= norm.low:
                raise _problem(f"a {direction} norm needs low < high")
            if norm.target is not None or norm.tolerance is not None:
                raise _problem(f"a {direction} norm takes low and high, not target and tolerance")
        return norm

    @model_validator(mode="after")
    def _default_modality(self) -> FeatureWeight:
        if self.modality is None:
            self.modality = GROUP_MODALITY[self.feature.partition(".")[0]]
        return self

    def normalise(self, value: float) -> float:
        norm = self.norm
        if self.direction == "target":
            return max(0.0, 1.0 - abs(value - norm.target) / norm.tolerance)
        share = (value - norm.low) / (norm.high - norm.low)
        share = min(1.0, max(0.0, share))
        return share if self.direction == "higher" else 1.0 - share

    def norm_text(self) -> str:
        """The norm in words: how the raw value x becomes 0..100."""
        n = self.norm
        if self.direction == "target":
            return (f"100 at {n.target:g}, 0 at {n.target:g} +- {n.tolerance:g} or further: "
                    f"100 x max(0, 1 - |x - {n.target:g}| / {n.tolerance:g})")
        span = f"{n.high - n.low:g}"
        if self.direction == "higher":
            return f"0 at or below {n.low:g}, 100 at or above {n.high:g}: 100 x (x - {n.low:g}) / {span}"
        return f"100 at or below {n.low:g}, 0 at or above {n.high:g}: 100 x ({n.high:g} - x) / {span}"


def _redo(error: ErrorDetails) -> InitErrorDetails:
    """An error pydantic reported, as the input to report it again with others."""
    if error["type"] == _ERROR:
        return {"type": _problem(error["msg"]), "loc": error["loc"], "input": error["input"]}
    detail: InitErrorDetails = {"type": error["type"], "loc": error["loc"], "input": error["input"]}
    if "ctx" in error:
        detail["ctx"] = error["ctx"]
    return detail


def _with_checks(data: Any, handler: ModelWrapValidatorHandler, title: str, found: list[InitErrorDetails]) -> Any:
    """Validate ``data`` and report ``found`` (checks across the raw items) together with its own errors,
    so that one broken item does not hide a repeated name elsewhere."""
    try:
        validated = handler(data)
    except ValidationError as exc:
        if not found:
            raise
        raise ValidationError.from_exception_data(exc.title, [*map(_redo, exc.errors()), *found]) from None
    if found:
        raise ValidationError.from_exception_data(title, found)
    return validated


def _repeated_names(data: Any, field: str, kind: str) -> list[InitErrorDetails]:
    items = data.get(field) if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    first: dict[str, int] = {}
    found: list[InitErrorDetails] = []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            message = f"duplicate {kind} name {name!r} (also {field}[{first[name]}])"
            found.append({"type": _problem(message), "loc": (field, index, "name"), "input": name})
        else:
            first[name] = index
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _band_limits(data: Any) -> list[InitErrorDetails]:
    bands = data.get("bands") if isinstance(data, dict) else None
    if not isinstance(bands, list):
        return []
    limits = [(i, b["below"]) for i, b in enumerate(bands) if isinstance(b, dict) and _is_number(b.get("below"))]
    found: list[InitErrorDetails] = []
    for (index, below), (_, previous) in zip(limits[1:], limits):
        if below <= previous:
            message = f"bands must rise: {below:g} is not above the band before ({previous:g})"
            found.append({"type": _problem(message), "loc": ("bands", index, "below"), "input": below})
    if limits and limits[-1][0] == len(bands) - 1 and limits[-1][1] < 100:
        index, below = limits[-1]
        message = f"the last band must reach 100 (below >= 100), so that every score has a band; got {below:g}"
        found.append({"type": _problem(message), "loc": ("bands", index, "below"), "input": below})
    return found


class Behaviour(_Strict):
    """An observable behaviour and the measurements that show it."""

    name: str = Field(min_length=1, description="Unique within its competency.")
    features: list[FeatureWeight] = Field(min_length=1)


class Competency(_Strict):
    """A scored competency: the weighted measurements of its behaviours."""

    name: str = Field(min_length=1, max_length=128, description="Unique within the framework; the scorecard key.")
    label: str = Field(min_length=1, description="How the competency is shown.")
    requires: list[Literal["speech", "face"]] = Field(
        default_factory=list, description="Without these in an answer the competency is insufficient evidence."
    )
    behaviours: list[Behaviour] = Field(min_length=1)

    @model_validator(mode="wrap")
    @classmethod
    def _unique_behaviours(cls, data: Any, handler: ModelWrapValidatorHandler[Competency]) -> Competency:
        return _with_checks(data, handler, cls.__name__, _repeated_names(data, "behaviours", "behaviour"))

    @property
    def features(self) -> list[FeatureWeight]:
        return [f for b in self.behaviours for f in b.features]


class Band(_Strict):
    """A named score range: scores below ``below`` and at or above the previous band's."""

    name: str = Field(min_length=1)
    below: float


class Framework(_Strict):
    """One role's competency profile."""

    name: str = Field(min_length=1, max_length=128, description="The role, as --role and the API name it.")
    version: str = Field(min_length=1, description="Part of every scorecard's model_version.")
    description: str = ""
    min_coverage: float = Field(
        0.5, ge=0, le=1, description="Share of a competency's weight that must be measured for a score."
    )
    bands: list[Band] = Field(min_length=1, description="In rising order; the last reaches 100.")
    competencies: list[Competency] = Field(min_length=1)

    @model_validator(mode="wrap")
    @classmethod
    def _checks_across_items(cls, data: Any, handler: ModelWrapValidatorHandler[Framework]) -> Framework:
        found = [*_repeated_names(data, "competencies", "competency"), *_repeated_names(data, "bands", "band"),
                 *_band_limits(data)]
        return _with_checks(data, handler, cls.__name__, found)

    def band(self, score: float) -> str:
        for band in self.bands:
            if score < band.below:
                return band.name
        return self.bands[-1].name


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class whose field sits at ``loc`` in a framework document."""
    current: Any = Framework
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = current.model_fields[part].annotation
        while typing.get_origin(current) is list:
            current = typing.get_args(current)[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        model = _model_at(error["loc"][:-1])
        if model is not None:
            return unknown_name("key", str(error["loc"][-1]), list(model.model_fields))
    if error["type"] == "missing" and error["loc"]:
        return f"missing required key {error['loc'][-1]!r}"
    return error["msg"]


def load_framework_file(path: Path) -> Framework:
    """Read and check one framework file; FrameworkError lists every problem, each with its line."""
    file = str(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FrameworkError(f"{file}: cannot be read: {exc}") from exc
    document = read_yaml(text, file)
    problems = list(document.problems)
    framework = None
    if document.root is not None or not problems:  # a syntax error leaves nothing to validate
        try:
            framework = Framework.model_validate(document.data)
        except ValidationError as exc:
            problems += [
                Problem(file, document.line_of(e["loc"]), path_text(e["loc"]), _message(e))
                for e in exc.errors(include_url=False)
            ]
    if problems or framework is None:
        problems.sort(key=lambda p: p.line)
        raise FrameworkError("\n".join(str(p) for p in problems), problems)
    return framework


@cache
def _load_dir(folder: Path) -> dict[str, Framework]:
    frameworks: dict[str, Framework] = {}
    files: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        framework = load_framework_file(path)
        if framework.name in frameworks:
            raise FrameworkError(f"{path}: role {framework.name!r} is already defined by {files[framework.name].name}")
        frameworks[framework.name] = framework
        files[framework.name] = path
    return frameworks


def available_frameworks(folder: Path | None = None) -> dict[str, Framework]:
    return _load_dir((folder or BUNDLED).resolve())


def get_framework(role: str, folder: Path | None = None) -> Framework:
    frameworks = available_frameworks(folder)
    if role not in frameworks:
        raise FrameworkError(f"unknown role {role!r}; known roles: {', '.join(sorted(frameworks))}")
    return frameworks[role]
