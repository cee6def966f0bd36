"""Human ratings for calibration: a CSV with interview_id, rater_id and one column per competency.

Ratings are on a scale (default 1..5) and are mapped linearly to 0..100, the scale of scores. An
empty cell is no rating. Every problem in the file is collected and reported together, each with
its row number as in the file (the header is row 1).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ID_COLUMNS = ("interview_id", "rater_id")
DEFAULT_SCALE = (1.0, 5.0)
_SCALE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|\.\.|:)\s*(-?\d+(?:\.\d+)?)\s*$")


class LabelsError(ValueError):
    """Every problem found in a labels file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_scale(text: str) -> tuple[float, float]:
    """'1-5' (or '1..5', '0:10') -> (1.0, 5.0)."""
    match = _SCALE.match(text)
    if not match or float(match.group(1)) >= float(match.group(2)):
        raise ValueError(f"scale {text!r} must be LOW-HIGH with LOW < HIGH, e.g. 1-5")
    return float(match.group(1)), float(match.group(2))


def format_scale(scale: tuple[float, float]) -> str:
    return f"{scale[0]:g}-{scale[1]:g}"


def to_points(rating: float, scale: tuple[float, float]) -> float:
    low, high = scale
    return 100.0 * (rating - low) / (high - low)


@dataclass
class Ratings:
    """Ratings on 0..100: competency -> interview_id -> rater_id -> rating."""

    scale: tuple[float, float]
    values: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def add(self, competency: str, interview_id: str, rater_id: str, points: float) -> None:
        self.values.setdefault(competency, {}).setdefault(interview_id, {})[rater_id] = points

    def targets(self, competency: str) -> dict[str, float]:
        """Per interview, the mean of its raters' ratings of ``competency``."""
        return {i: sum(r.values()) / len(r) for i, r in self.values.get(competency, {}).items()}

    @property
    def interviews(self) -> set[str]:
        return {i for per in self.values.values() for i in per}


def read_labels(
    path: Path,
    competencies: Iterable[str],
    interview_problem: Callable[[str], str | None] = lambda _id: None,
    scale: tuple[float, float] = DEFAULT_SCALE,
) -> Ratings:
    """Read and check a ratings file; ``interview_problem`` says why an id cannot be used (None: fine).

    Raises LabelsError listing every bad row.
    """
    known = list(competencies)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise LabelsError([f"{path.name}: the file is empty"])
            columns = _check_header([c.strip() for c in header], known)
            return _read_rows(reader, columns, interview_problem, scale)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError([f"{path.name}: cannot be read as CSV: {exc}"]) from exc


def _check_header(header: list[str], known: list[str]) -> list[str]:
    problems = []
    missing = [c for c in ID_COLUMNS if c not in header]
    if missing:
        problems.append(f"row 1: missing column(s) {', '.join(missing)}")
    seen: set[str] = set()
    for column in header:
        if column in seen:
            problems.append(f"row 1: column {column!r} appears twice")
        seen.add(column)
        if column not in ID_COLUMNS and column not in known:
            problems.append(f"row 1: unknown competency column {column!r} (known: {', '.join(known)})")
    if problems:
        raise LabelsError(problems)
    return header


def _read_rows(
    reader, columns: list[str], interview_problem: Callable[[str], str | None], scale: tuple[float, float]
) -> Ratings:
    ratings = Ratings(scale)
    problems: list[str] = []
    first_row: dict[tuple[str, str], int] = {}
    checked: dict[str, str | None] = {}
    for cells in reader:
        row = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(columns):
            problems.append(f"row {row}: {len(cells)} cells but the header has {len(columns)} columns")
            continue
        record = {c: (cells[i].strip() if i < len(cells) else "") for i, c in enumerate(columns)}
        interview_id, rater_id = record["interview_id"], record["rater_id"]
        missing = [c for c in ID_COLUMNS if not record[c]]
        if missing:
            problems.append(f"row {row}: missing {' and '.join(missing)}")
            continue
        key = (interview_id, rater_id)
        if key in first_row:
            problems.append(
                f"row {row}: duplicate rating of interview {interview_id} by rater {rater_id} "
                f"(first on row {first_row[key]})"
            )
            continue
        first_row[key] = row
        if interview_id not in checked:
            checked[interview_id] = interview_problem(interview_id)
        if checked[interview_id]:
            problems.append(f"row {row}: interview {interview_id} {checked[interview_id]}")
            continue
        for competency, cell in record.items():
            if competency in ID_COLUMNS or not cell:
                continue
            value = _rating(cell, scale)
            if isinstance(value, str):
                problems.append(f"row {row}: {competency}: {value}")
            else:
                ratings.add(competency, interview_id, rater_id, to_points(value, scale))
    if problems:
        raise LabelsError(problems)
    return ratings


def _rating(cell: str, scale: tuple[float, float]) -> float | str:
    """The rating, or what is wrong with it."""
    try:
        value = float(cell)
    except ValueError:
        return f"{cell!r} is not a number"
    if not math.isfinite(value):
        return f"{cell!r} is not a number"
    if not scale[0] <= value <= scale[1]:
        return f"{cell} is outside the scale {format_scale(scale)}"
    return value
