"""`poise audit`: the bias audit of a tenant's stored scores, printed or written as JSON, Markdown or HTML."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from poise_common.settings import PoiseSettings

CSV_COLUMNS = ("interview_id", "sex", "race_ethnicity")


def read_demographics_csv(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """(sex, race_ethnicity) per interview from a CSV; ValueError naming every bad row."""
    from poise_fusion.audit import AuditError, normalise_category

    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)} (need {', '.join(CSV_COLUMNS)})")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path.name}: cannot be read as CSV ({exc})") from exc
    found: dict[str, tuple[str | None, str | None]] = {}
    problems: list[str] = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        interview_id = (row.get("interview_id") or "").strip()
        if not interview_id:
            problems.append(f"row {line}: no interview_id")
            continue
        if interview_id in found:
            problems.append(f"row {line}: interview {interview_id} appears twice")
            continue
        try:
            found[interview_id] = (normalise_category("sex", row.get("sex")),
                                   normalise_category("race_ethnicity", row.get("race_ethnicity")))
        except AuditError as exc:
            problems.append(f"row {line}: {exc}")
    if problems:
        # Row numbers and the offending value only: enough to fix the file, nothing else from it.
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValueError(f"{path.name}: {shown}")
    return found


def _record_run(trail, tenant: str, actor: str, *, role: str, competency: str | None, mode: str, fmt: str,
                given: bool) -> None:
    """The audit log's ``audit.run`` entry of this run; if it cannot be written, the report is not given."""
    from poise.cli import fail

    detail = {"role": role, "competency": competency, "mode": mode, "format": fmt,
              "demographics": "file" if given else "stored"}
    try:
        trail.record(tenant=tenant, actor=actor, action="audit.run", detail=detail)
    except Exception as exc:  # noqa: BLE001 - any failure to record refuses the run
        fail(f"the audit log cannot be written ({type(exc).__name__}), so no report was made; retry shortly", code=1)


def audit(
    role: Annotated[str, typer.Option("--role", help="The role (competency profile) whose scores are audited.")],
    competency: Annotated[
        Optional[str], typer.Option("--competency", help="One competency; default: overall (mean of the scored ones).")
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="scoring-rate (above the sample median) or selection-rate (--threshold).")
    ] = "scoring-rate",
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", help="selection-rate: the score at or above which one passes.")
    ] = None,
    demographics: Annotated[
        Optional[Path],
        typer.Option("--demographics", help="CSV with interview_id, sex, race_ethnicity; default: the stored ones."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, markdown or html.")] = "json",
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the report here instead of stdout.")] = None,
    tenant: Annotated[
        Optional[str], typer.Option("--tenant", help="The tenant audited (default: POISE_TENANT).")
    ] = None,
    db: Annotated[
        Optional[str],
        typer.Option("--db", help="Database URL (default: POISE_DATABASE_URL or SQLite under POISE_HOME)."),
    ] = None,
    min_share: Annotated[
        float, typer.Option("--min-share", help="Categories under this share of the sample are excluded.")
    ] = 0.02,
) -> None:
    """Bias audit (NYC Local Law 144): scoring or selection rates and impact ratios by sex and race/ethnicity."""
    from poise.audit_log_cmd import operator
    from poise.cli import fail
    from poise_common.audit_trail import AuditTrail
    from poise_common.db.engine import create_db_engine, session_factory, upgrade
    from poise_fusion.audit import MODES, AuditError, run_audit
    from poise_fusion.audit_report import FORMATS, render
    from poise_fusion.demographics import DemographicsStore, data_source

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    mode_name = mode.replace("-", "_")
    if mode_name not in MODES:
        fail(f"--mode must be scoring-rate or selection-rate (got {mode!r})")
    settings = PoiseSettings(**({"database_url": db} if db else {}))
    tenant = tenant or settings.tenant
    try:
        given = read_demographics_csv(demographics) if demographics else None
    except ValueError as exc:
        fail(str(exc))
    engine = create_db_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        sessions = session_factory(engine)
        store = DemographicsStore(sessions)
        try:
            sample = store.sample(tenant, role, competency)
            source = data_source(tenant, role, demographics.name if demographics else None)
            if given is not None:
                unmatched = len(set(given) - set(sample.scores))
                if unmatched:
                    print(f"poise: note: {unmatched} row(s) of {demographics.name} match no scored interview "
                          f"of role {role}", file=sys.stderr)
            result = run_audit(sample.records(given), role=role, competency=competency, mode=mode_name,
                               threshold=threshold, min_share=min_share, data_source=source,
                               unscored=sample.unscored)
        except AuditError as exc:
            fail(str(exc))
        # Recorded before the report goes out, as GET /v1/audit does: no audit run goes unlogged.
        _record_run(AuditTrail(sessions), tenant, operator(), role=role, competency=competency, mode=mode_name,
                    fmt=fmt, given=demographics is not None)
    finally:
        engine.dispose()
    text = render(result, fmt)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    print(f"wrote {out}", file=sys.stderr)
