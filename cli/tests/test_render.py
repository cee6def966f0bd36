"""The readable scorecard `poise score` prints: numbers that agree with their bands, times that read as clock times."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from poise.render import render_scorecard


def competency(label: str, score: float, band: str, evidence: list[dict]) -> dict:
    return {"name": label.lower(), "label": label, "score": score, "band": band, "reason": None,
            "contributions": [{"feature": "nlp.hedge_rate", "value": 0.0, "behaviour": "assertive wording",
                               "points": score}],
            "evidence": evidence}


def episode(start_s: float, end_s: float) -> dict:
    return {"kind": "episode", "question_id": "q1", "start_s": start_s, "end_s": end_s, "signal": "smile"}


def printed(competencies: list[dict]) -> list[str]:
    card = {"interview_id": "iv", "role": "generic", "model_version": "generic@1.0+norms", "policy": "default",
            "competencies": competencies, "answers": [], "warnings": []}
    out = io.StringIO()
    render_scorecard(card, Console(file=out, width=120, color_system=None))
    return out.getvalue().splitlines()


def row_of(lines: list[str], label: str) -> str:
    (row,) = [line for line in lines if line.lstrip("│ ").startswith(label) and "│" in line]
    return row


@pytest.mark.parametrize(("score", "band", "shown"), [
    (79.96, "strong", "79.9"),  # rounding would print 80, the first "exceptional" score
    (79.6, "strong", "79.6"),
    (80.0, "exceptional", "80.0"),
    (32.5, "developing", "32.5"),  # round-half-even printed 32
    (39.99, "developing", "39.9"),
])
def test_a_score_is_never_shown_in_the_next_band(score, band, shown):
    lines = printed([competency("Confidence", score, band, [])])
    cells = [cell.strip() for cell in row_of(lines, "Confidence").split("│")]
    assert cells[2] == shown and cells[4] == band
    assert f"Confidence {shown}" in lines


@pytest.mark.parametrize(("start_s", "end_s", "shown"), [
    (59.97, 119.96, "q1 1:00.0-2:00.0"),  # split before rounding, these read 0:60.0-1:60.0
    (12.24, 19.66, "q1 0:12.2-0:19.7"),
    (59.94, 61.06, "q1 0:59.9-1:01.1"),
])
def test_times_are_rounded_to_tenths_before_minutes_and_seconds(start_s, end_s, shown):
    lines = printed([competency("Empathy", 50.0, "moderate", [episode(start_s, end_s)])])
    (line,) = [line for line in lines if "smile episode" in line]
    assert line.split("smile episode")[1].strip() == shown
