"""The bias audit's public summary, as Markdown or as one standalone HTML page.

Both renderers share the same facts, method text and table cells, so the two formats never
disagree; they differ only in markup and escaping.
"""

from __future__ import annotations

import html
import json
import re

from poise_fusion.audit import AuditResult, DimensionResult, percent

DIMENSION_TITLES = {
    "sex": "Sex",
    "race_ethnicity": "Race/ethnicity",
    "intersectional": "Intersectional (sex × race/ethnicity)",
}


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _rate_words(result: AuditResult) -> tuple[str, str]:
    """Column titles for the number passing and the rate, in the mode's own words."""
    if result.mode == "scoring_rate":
        return "Scored above median", "Scoring rate"
    return "Selected", "Selection rate"


def _facts(result: AuditResult) -> list[tuple[str, str]]:
    subject = "overall score (mean of the scored competencies)" if result.competency == "overall" \
        else f"competency {result.competency}"
    cutoff = ("Median score", _number(result.median, 2)) if result.mode == "scoring_rate" \
        else ("Selection threshold", _number(result.threshold, 2))
    return [
        ("Audit date", result.audit_date),
        ("Data source", result.data_source or "not stated"),
        ("What was scored", f"role {result.role}, {subject}"),
        ("Rate", "scoring rate" if result.mode == "scoring_rate" else "selection rate"),
        ("Sample size", str(result.sample_size)),
        cutoff,
        ("Interviews of the role without this score (not in the sample)", str(result.unscored)),
    ]


def _method(result: AuditResult) -> list[str]:
    min_share = percent(result.min_share)
    if result.mode == "scoring_rate":
        rate = (f"The scoring rate of a category is the share of its candidates whose score is strictly above "
                f"the median score of the whole sample ({_number(result.median, 2)}); candidates of unknown "
                "category count in the median.")
    else:
        rate = (f"The selection rate of a category is the share of its candidates whose score is at or above "
                f"the threshold of {_number(result.threshold, 2)}.")
    return [
        rate,
        "The impact ratio of a category is its rate divided by the highest rate among the categories kept in "
        "the audit.",
        f"Four-fifths rule (29 CFR 1607.4(D)): an impact ratio below {result.four_fifths_ratio:g} is generally "
        "regarded as evidence of adverse impact; such categories are flagged.",
        f"A category with under {min_share} of the sample is excluded: it gets no impact ratio and does not set "
        "the highest rate. Its count and rate are still shown.",
        "Sex and race/ethnicity are self-reported; a candidate who did not say is counted as unknown in that "
        "dimension, and in the intersectional one.",
    ]


def _cells(dimension: DimensionResult) -> list[tuple[list[str], bool, bool]]:
    """Per category: its cells, whether it is flagged, whether it is excluded."""
    rows = []
    for c in dimension.categories:
        if c.excluded:
            note = f"excluded: {c.exclusion_reason}"
        elif c.four_fifths:
            note = "FLAGGED: impact ratio below four-fifths"
        else:
            note = ""
        cells = [c.category, str(c.count), f"{c.share:.1%}", str(c.passed), _number(c.rate),
                 _number(c.impact_ratio), note]
        rows.append((cells, c.four_fifths, c.excluded))
    return rows


def _headers(result: AuditResult) -> list[str]:
    passed, rate = _rate_words(result)
    return ["Category", "Count", "Share of sample", passed, rate, "Impact ratio", "Note"]


# Characters that would turn user text (role, data source) into markup, links or table cells.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|])")


def _md(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def to_markdown(result: AuditResult) -> str:
    lines = [f"# Bias audit: {_md(result.role)}", ""]
    lines += [f"- **{label}:** {_md(value)}" for label, value in _facts(result)]
    lines += ["", "## Method", ""] + [f"- {_md(text)}" for text in _method(result)]
    headers = _headers(result)
    for name, dimension in result.dimensions.items():
        lines += ["", f"## {_md(DIMENSION_TITLES[name])}", "", "| " + " | ".join(headers) + " |",
                  "|" + "|".join("---" for _ in headers) + "|"]
        for cells, flagged, _excluded in _cells(dimension):
            shown = [_md(cell) for cell in cells]
            if flagged:
                shown = [f"**{cell}**" if cell else cell for cell in shown]
            lines.append("| " + " | ".join(shown) + " |")
        lines += ["", f"Unknown category: {dimension.unknown}"]
    lines += ["", "## Flags", ""]
    lines += [f"- {_md(flag['message'])}" for flag in result.flags] or ["- none"]
    return "\n".join(lines) + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #1a1a1a; }
table { border-collapse: collapse; margin: 0.5rem 0 0.25rem; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child, td:last-child { text-align: left; }
tr.flagged { background: #fde2e1; font-weight: 600; }
tr.excluded { color: #666; font-style: italic; }
dt { font-weight: 600; } dd { margin: 0 0 0.4rem 0; }
"""


def to_html(result: AuditResult) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>Bias audit: {e(result.role)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>Bias audit: {e(result.role)}</h1>", "<dl>",
    ]
    parts += [f"<dt>{e(label)}</dt><dd>{e(value)}</dd>" for label, value in _facts(result)]
    parts += ["</dl>", "<h2>Method</h2>", "<ul>"] + [f"<li>{e(text)}</li>" for text in _method(result)] + ["</ul>"]
    header = "".join(f'<th scope="col">{e(h)}</th>' for h in _headers(result))
    for name, dimension in result.dimensions.items():
        parts += [f"<h2>{e(DIMENSION_TITLES[name])}</h2>", "<table>", f"<thead><tr>{header}</tr></thead>", "<tbody>"]
        for cells, flagged, excluded in _cells(dimension):
            css = "flagged" if flagged else "excluded" if excluded else ""
            row = "".join(f"<td>{e(cell)}</td>" for cell in cells)
            parts.append(f'<tr class="{css}">{row}</tr>' if css else f"<tr>{row}</tr>")
        parts += ["</tbody>", "</table>", f"<p>Unknown category: {dimension.unknown}</p>"]
    parts += ["<h2>Flags</h2>", "<ul>"]
    parts += [f"<li>{e(flag['message'])}</li>" for flag in result.flags] or ["<li>none</li>"]
    parts += ["</ul>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


FORMATS = ("json", "markdown", "html")


def render(result: AuditResult, fmt: str) -> str:
    """The report as text in ``fmt``: json, markdown or html."""
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return to_markdown(result)
    if fmt == "html":
        return to_html(result)
    raise ValueError(f"unknown report format {fmt!r}")
