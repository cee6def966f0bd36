"""The readable scorecard printed by `poise score`."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table


def _bar(score: float | None, width: int = 20) -> str:
    if score is None:
        return "·" * width
    filled = round(score / 100 * width)
    return "█" * filled + "░" * (width - filled)


def _time(seconds: float) -> str:
    """m:ss.s. Rounded to tenths before minutes and seconds are split, so 59.97 s reads 1:00.0, never 0:60.0."""
    minutes, tenths = divmod(round(seconds * 10), 600)
    return f"{minutes}:{tenths / 10:04.1f}"


def _score(score: float | None) -> str:
    """The score cut (not rounded) to one decimal, so the number shown never reaches the next band
    while the band shown is the one below it: 79.96 is "strong" and reads 79.9, not 80."""
    return "—" if score is None else f"{math.floor(score * 10) / 10:.1f}"


def render_scorecard(card: dict, console: Console) -> None:
    console.print(f"[bold]Scorecard[/bold] {card['interview_id']}  role: {card['role']}  "
                  f"model: {card['model_version']}  policy: {card['policy']}")
    table = Table(show_header=True, header_style="bold")
    table.add_column("Competency")
    table.add_column("Score", justify="right")
    table.add_column("")
    table.add_column("Band")
    for comp in card["competencies"]:
        score = comp["score"]
        table.add_row(comp["label"], _score(score), _bar(score), comp["band"])
    console.print(table)
    for comp in card["competencies"]:
        if comp["score"] is None:
            console.print(f"[bold]{comp['label']}[/bold]: insufficient evidence ({comp['reason']})")
            continue
        console.print(f"[bold]{comp['label']}[/bold] {_score(comp['score'])}")
        for c in sorted(comp["contributions"], key=lambda c: -c["points"]):
            console.print(f"  +{c['points']:5.1f}  {c['feature']} = {c['value']}  ({c['behaviour']})")
        for ev in comp["evidence"]:
            when = f"{ev['question_id']} {_time(ev['start_s'])}-{_time(ev['end_s'])}"
            if ev["kind"] == "quote":
                console.print(f"    “{ev['text']}”  [dim]{when}[/dim]")
            elif ev["kind"] == "episode":
                console.print(f"    {ev['signal']} episode  [dim]{when}[/dim]")
    for answer in card["answers"]:
        s = answer["signals"]
        console.print(
            f"[bold]{answer['question_id']}[/bold] {answer['duration_s']:.1f} s: "
            f"{s['nlp']['word_count']} words, {_fmt(s['audio'].get('speech_rate_wpm'), 'wpm')}, "
            f"face {s['vision']['face_presence']:.0%}, eye contact {_pct(s['vision'].get('eye_contact_ratio'))}"
        )
    for warning in card["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")


def _fmt(value, unit: str) -> str:
    return "—" if value is None else f"{value:.0f} {unit}"


def _pct(value) -> str:
    return "—" if value is None else f"{value:.0%}"
