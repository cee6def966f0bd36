"""`poise calibrate` and `poise scoring-models`: fit a role's scores to a tenant's human ratings, and choose its model.

A model belongs to one tenant and scores only that tenant's candidates: every command here acts
for `--tenant` (default POISE_TENANT).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from poise_common.settings import PoiseSettings

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.orm import sessionmaker

    from poise_fusion.framework import Framework

scoring_models_app = typer.Typer(
    no_args_is_help=True,
    help="A tenant's calibrated scoring models per role: list, activate, back to the norms.",
)
DbOption = Annotated[
    Optional[str], typer.Option("--db", help="Database URL (default: POISE_DATABASE_URL or SQLite under POISE_HOME).")
]
BarOption = Annotated[
    float, typer.Option("--bar", help="Blind Pearson r that the lower end of every calibrated competency's 95 % "
                                      "interval must reach for the model to be activated (the report prints the "
                                      "whole rule).")
]
ForceOption = Annotated[bool, typer.Option("--force", help="Activate even if it fails the gate (recorded as forced).")]
TenantOption = Annotated[
    Optional[str], typer.Option("--tenant", help="The tenant whose models these are (default: POISE_TENANT).")
]
EXIT_BELOW_BAR = 1


@contextmanager
def _database(db: str | None) -> Iterator[tuple[PoiseSettings, sessionmaker]]:
    from poise_common.db.engine import create_db_engine, private_dir, session_factory, upgrade

    settings = PoiseSettings(**({"database_url": db} if db else {}))
    private_dir(settings.home_dir)
    engine = create_db_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        yield settings, session_factory(engine)
    finally:
        engine.dispose()


def _framework(settings: PoiseSettings, role: str | None) -> Framework:
    from poise.cli import fail
    from poise_fusion.framework import FrameworkError, get_framework

    try:
        return get_framework(role or settings.fusion.default_role, settings.fusion.frameworks_dir)
    except FrameworkError as exc:
        fail(str(exc))


def scored_documents(sessions: sessionmaker, role: str, tenant: str | None) -> dict[str, dict]:
    """The stored scorecards of a role's scored interviews, of one tenant (None: every tenant)."""
    from sqlalchemy import select

    from poise_common.db.models import Interview, Scorecard

    query = (
        select(Scorecard.interview_id, Scorecard.document)
        .join(Interview, Interview.id == Scorecard.interview_id)
        .where(Interview.role == role, Interview.status == "scored")
    )
    if tenant is not None:
        query = query.where(Scorecard.tenant == tenant)
    with sessions() as session:
        return {interview_id: document for interview_id, document in session.execute(query)}


def interview_problem(
    sessions: sessionmaker, role: str, tenant: str | None, documents: dict[str, dict]
) -> Callable[[str], str | None]:
    """Why a labelled interview id cannot be used (None when it can)."""
    from poise_common.db.models import Interview

    def problem(interview_id: str) -> str | None:
        if interview_id in documents:
            return None
        with sessions() as session:
            row = session.get(Interview, interview_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            return "is not in the store" + (f" for tenant {tenant}" if tenant is not None else "")
        if row.status != "scored":
            return f"is not scored (status {row.status})"
        if row.role != role:
            return f"was scored for role {row.role}, not {role}"
        return "has no stored scorecard"

    return problem


def calibrate(
    labels: Annotated[Path, typer.Option("--labels", help="CSV: interview_id, rater_id, one column per competency.")],
    role: Annotated[Optional[str], typer.Option("--role", help="The role (competency profile) to calibrate.")] = None,
    scale: Annotated[str, typer.Option("--scale", help="The ratings' scale, LOW-HIGH.")] = "1-5",
    holdout: Annotated[
        float, typer.Option("--holdout", help="Share of interviews kept blind: never used to fit or tune.")
    ] = 0.25,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the blind split, the folds and the bootstrap.")] = 0,
    bar: BarOption = 0.6,
    force: ForceOption = False,
    tenant: Annotated[
        Optional[str],
        typer.Option("--tenant", help="The tenant whose candidates the model scores and whose scored interviews "
                                      "it is fitted on (default: POISE_TENANT)."),
    ] = None,
    all_tenants: Annotated[
        bool, typer.Option("--all-tenants", help="Fit on every tenant's scored interviews; the model still scores "
                                                 "only --tenant's candidates.")
    ] = False,
    policy: Annotated[
        str, typer.Option("--policy", help="Policy profile deciding which kinds of measurement may be fitted.")
    ] = "default",
    min_labelled: Annotated[
        int, typer.Option("--min-labelled", help="Fewer labelled interviews leave a competency uncalibrated.")
    ] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    db: DbOption = None,
) -> None:
    """Fit a tenant's scores for a role to human ratings; save the model, activate it if it passes the gate."""
    from poise.cli import fail
    from poise_fusion.calibration import Settings, apply_gate, calibrate as fit
    from poise_fusion.labels import LabelsError, parse_scale, read_labels
    from poise_fusion.policy import PolicyError, get_profile
    from poise_fusion.scoring_model import ModelStore

    try:
        scale_range = parse_scale(scale)
        get_profile(policy)
    except (ValueError, PolicyError) as exc:
        fail(str(exc))
    if not 0 < holdout < 1:
        fail(f"--holdout must be between 0 and 1 (got {holdout})")
    if not labels.is_file():
        fail(f"no labels file {labels}")
    with _database(db) as (settings, sessions):
        framework = _framework(settings, role)
        owner = tenant or settings.tenant
        scope = None if all_tenants else owner
        documents = scored_documents(sessions, framework.name, scope)
        try:
            ratings = read_labels(
                labels, [c.name for c in framework.competencies],
                interview_problem(sessions, framework.name, scope, documents), scale_range,
            )
        except LabelsError as exc:
            fail(f"{labels.name}: {len(exc.problems)} problem(s):\n  " + "\n  ".join(exc.problems))
        store = ModelStore(sessions)
        version = store.next_version(framework)
        settings_used = Settings(policy=policy, holdout=holdout, seed=seed, min_labelled=min_labelled)
        model, report = fit(framework, documents, ratings, version, settings_used)
        report.update(labels=labels.name, tenant=owner, interviews_of=scope or "all tenants", bar=bar)
        if model is None:
            _print(report, as_json)
            fail("no competency could be calibrated (see the reasons above); nothing was saved", EXIT_BELOW_BAR)
        below = apply_gate(report, bar)
        active = not below or force
        report.update(failing=below, active=active, forced=bool(below) and force, saved_at=time.time())
        store.save(owner, model, report)
        if active:
            store.activate(owner, version, forced=bool(below))
    _print(report, as_json)
    if not active:
        fail(f"{version} saved but not activated: {', '.join(below)} did not pass the gate "
             "(poise scoring-models activate --force to use it anyway)", EXIT_BELOW_BAR)


def _print(report: dict, as_json: bool) -> None:
    if as_json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        from rich.console import Console

        console = Console()
        # Piped output has no width of its own: wide enough that the table keeps one row per competency.
        render_report(report, console if console.is_terminal else Console(width=170))


def _figure(figures: dict | None, name: str) -> str:
    if not figures or figures[name]["r"] is None:
        return "-"
    ci = figures[name]["ci"]
    return f"{figures[name]['r']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _value(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_report(report: dict, console: Console) -> None:
    """The calibration report as tables: figures per competency, then the fitted weights."""
    from rich.table import Table

    table = Table(title=f"{report['version']}: blind share {report['holdout']:.0%}, seed {report['seed']}")
    for column in ("competency", "n train/blind", "r [95% CI]", "rho [95% CI]", "MAE", "norms r [95% CI]",
                   "norms MAE", "CV r", "ICC(2,1)/(2,k)", "lambda"):
        table.add_column(column)
    for name, c in report["competencies"].items():
        agreement = c.get("agreement") or {}
        icc = f"{_value(agreement.get('icc2_1'))}/{_value(agreement.get('icc2_k'))}"
        if c["status"] != "calibrated":
            table.add_row(name, str(c.get("n_labelled", 0)), f"uncalibrated: {c['reason']}", "", "", "", "", "", icc, "")
            continue
        blind, norms = c["blind"], c["norms_blind"]
        table.add_row(
            name, f"{c['n_train']}/{blind['n']}", _figure(blind, "pearson"), _figure(blind, "spearman"),
            _value(blind["mae"], 1), _figure(norms, "pearson"), _value(norms["mae"], 1), _value(c["cv_r"]), icc,
            f"{c['lambda']:g}",
        )
    console.print(table)
    for name, c in report["competencies"].items():
        if c["status"] == "calibrated":
            parts = " + ".join(f"{w:.1f} x {f}" for f, w in c["weights"].items())
            console.print(f"{name} = {c['intercept']:.1f} + {parts}", highlight=False)
    methods = report.get("face_methods") or {}
    if len(methods) > 1:
        counted = ", ".join(f"{method} ({n} answers)" for method, n in methods.items())
        console.print(f"warning: the rated answers' face signals were measured in different ways: {counted}",
                      highlight=False)
    if "gate" in report:
        render_gate(report, console)
    if "active" in report:
        state = "active" + (" (forced below the bar)" if report["forced"] else "") if report["active"] else "not active"
        console.print(f"{report['version']} for tenant {report['tenant']}: {state}; bar {report['bar']}",
                      highlight=False)


def render_gate(report: dict, console: Console) -> None:
    """The activation rule, then each calibrated competency's verdict under it."""
    console.print(f"gate: {report['gate']['rule']}", highlight=False)
    for name, c in report["competencies"].items():
        if "verdict" in c:
            outcome = "passes" if c["verdict"]["passes"] else "fails"
            console.print(f"  {name}: {outcome}: {c['verdict']['reason']}", highlight=False)


@scoring_models_app.command("list")
def list_models(
    role: Annotated[Optional[str], typer.Option("--role", help="Only this role's models.")] = None,
    tenant: TenantOption = None,
    all_tenants: Annotated[
        bool, typer.Option("--all-tenants", help="Every tenant's models, each line naming its tenant.")
    ] = False,
    db: DbOption = None,
) -> None:
    """List a tenant's scoring models: version, state, and each calibrated competency's blind r [95% CI]."""
    from poise_fusion.scoring_model import ModelStore

    with _database(db) as (settings, sessions):
        records = ModelStore(sessions).list(None if all_tenants else (tenant or settings.tenant), role)
    for record in records:
        state = ("active, forced" if record.forced else "active") if record.active else "inactive"
        owner = f"tenant {record.tenant or '(none)'}  " if all_tenants else ""
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record.created_at))
        figures = ", ".join(
            f"{name} {_figure(c['blind'], 'pearson')}"
            for name, c in record.report.get("competencies", {}).items() if c.get("status") == "calibrated"
        )
        print(f"{record.version}  {state}  {owner}{created} UTC  blind r: {figures}")


@scoring_models_app.command("activate")
def activate(
    version: Annotated[str, typer.Argument(help="The model's version, e.g. generic@1.0+cal.2.")],
    bar: BarOption = 0.6,
    force: ForceOption = False,
    tenant: TenantOption = None,
    db: DbOption = None,
) -> None:
    """Make one of a tenant's models its active one for its role (the tenant's scores use it from then on)."""
    from poise.cli import fail
    from poise_fusion.calibration import gate_rule, verdicts
    from poise_fusion.scoring_model import ModelStore

    with _database(db) as (settings, sessions):
        store = ModelStore(sessions)
        owner = tenant or settings.tenant
        record = store.get(version)
        if record is None or record.tenant != owner:
            fail(f"no scoring model {version} of tenant {owner}")
        framework = _framework(settings, record.model.framework)
        if framework.version != record.model.framework_version:
            fail(f"{version} was calibrated for {framework.name} {record.model.framework_version}, "
                 f"but the framework is now {framework.version}: calibrate again")
        below = {name: v.reason for name, v in verdicts(record.report, bar).items() if not v.passes}
        if below and not force:
            reasons = "".join(f"\n  {name}: {reason}" for name, reason in below.items())
            fail(f"{version} not activated (--force to use it anyway); gate: {gate_rule(bar)}{reasons}",
                 EXIT_BELOW_BAR)
        store.activate(owner, version, forced=bool(below))
    print(f"activated {version} for tenant {owner}" + (" (forced below the bar)" if below else ""))


@scoring_models_app.command("deactivate")
def deactivate(
    role: Annotated[str, typer.Option("--role", help="The role whose scores go back to the framework's norms.")],
    tenant: TenantOption = None,
    db: DbOption = None,
) -> None:
    """Go back to the framework's norms for a tenant's role."""
    from poise_fusion.scoring_model import ModelStore

    with _database(db) as (settings, sessions):
        owner = tenant or settings.tenant
        versions = ModelStore(sessions).deactivate(owner, role)
    print(f"deactivated {', '.join(versions)}; {role} uses its norms for tenant {owner}" if versions
          else f"{role} already uses its norms for tenant {owner}")
