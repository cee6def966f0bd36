"""`poise tenants`: a tenant's policy profile (default, eu, us-nyc, us-il) and candidate notice."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from poise_common.settings import PoiseSettings

if TYPE_CHECKING:
    from poise_fusion.policy import TenantPolicyStore

tenants_app = typer.Typer(no_args_is_help=True, help="Tenants' policy profiles and candidate notices.")
DbOption = Annotated[
    Optional[str], typer.Option("--db", help="Database URL (default: POISE_DATABASE_URL or SQLite under POISE_HOME).")
]


@contextmanager
def _policy_store(db: str | None) -> Iterator[TenantPolicyStore]:
    from poise_common.db.engine import create_db_engine, private_dir, session_factory, upgrade
    from poise_fusion.policy import TenantPolicyStore

    settings = PoiseSettings(**({"database_url": db} if db else {}))
    private_dir(settings.home_dir)
    engine = create_db_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        # No cache: a command reads what is stored right now.
        yield TenantPolicyStore(session_factory(engine), settings.fusion.default_policy, ttl_s=0)
    finally:
        engine.dispose()


def read_notice(path: Path) -> dict:
    """A notice file: one YAML (or JSON) mapping of notice fields; ValueError when it is not one."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: the notice must be a mapping of fields (alternative_process_contact, ...)")
    return data


@tenants_app.command("set-policy")
def set_policy(
    tenant: Annotated[str, typer.Argument(help="The tenant.")],
    profile: Annotated[str, typer.Argument(help="default, eu, us-nyc or us-il.")],
    notice: Annotated[
        Optional[Path],
        typer.Option("--notice", help="YAML file of the candidate notice (us-nyc needs alternative_process_contact, "
                     "retention, audit_summary_url); without it the stored notice stays."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Set a tenant's policy profile; scoring follows it within seconds, without a restart."""
    from poise.cli import fail
    from poise_fusion.policy import KEEP, PolicyError

    try:
        data = read_notice(notice) if notice else KEEP
    except ValueError as exc:
        fail(str(exc))
    with _policy_store(db) as store:
        try:
            stored = store.set(tenant, profile, data)
        except PolicyError as exc:
            fail(str(exc))
    print(f"{stored.tenant}: policy {stored.name}{' with a candidate notice' if stored.notice else ''}")


@tenants_app.command("show")
def show(
    tenant: Annotated[str, typer.Argument(help="The tenant.")],
    db: DbOption = None,
) -> None:
    """Print a tenant's policy profile and notice as YAML (stored: false means the default applies)."""
    import yaml

    with _policy_store(db) as store:
        found = store.get(tenant)
    yaml.safe_dump(found.view(), sys.stdout, sort_keys=False, allow_unicode=True)
