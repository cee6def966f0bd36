"""Data protection from the command line: data keys (rotation, re-wrapping), retention and the purge."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from poise.audit_log_cmd import operator
from poise.calibrate_cmd import DbOption, _database

retention_app = typer.Typer(no_args_is_help=True, help="How long tenants' candidate data is kept.")


def rotate_data_key(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant whose data key is rotated.")],
    db: DbOption = None,
) -> None:
    """Give a tenant a new data key version: new data is encrypted with it, older data still opens
    with the versions it was written with. Online: running services pick it up within 30 s."""
    from poise.cli import fail
    from poise_common.audit_trail import AuditTrail
    from poise_common.crypto import CryptoError, KeyRing

    with _database(db) as (settings, sessions):
        try:
            version = KeyRing.from_settings(sessions, settings).rotate(tenant)
        except (CryptoError, ValueError) as exc:
            fail(str(exc))
        AuditTrail(sessions).record(tenant=tenant, actor=operator(), action="key.rotate",
                                    detail={"data_key_version": version})
    print(f"{tenant}: data key version {version} is active")


def rewrap(
    master: Annotated[Optional[str], typer.Option(
        "--master", help="The id of the master key to wrap with (one of POISE_MASTER_KEYS); default: the first.",
    )] = None,
    db: DbOption = None,
) -> None:
    """Re-wrap every tenant's data keys with another master key, online. Configure the new key first
    in POISE_MASTER_KEYS of every process (beside the old one), then run this; then the old one may go."""
    from poise.cli import fail
    from poise_common.audit_trail import AuditTrail
    from poise_common.crypto import CryptoError, KeyRing

    with _database(db) as (settings, sessions):
        try:
            keys = KeyRing.from_settings(sessions, settings)
            changed = keys.rewrap(master)
        except (CryptoError, ValueError) as exc:
            fail(str(exc))
        trail = AuditTrail(sessions)
        for tenant in sorted({tenant for tenant, _ in changed}):
            versions = sorted(v for t, v in changed if t == tenant)
            trail.record(tenant=tenant, actor=operator(), action="key.rotate",
                         detail={"rewrapped_versions": versions, "master_key_id": master or keys.masters.active.key_id})
    print(f"re-wrapped {len(changed)} data keys with master key {master or keys.masters.active.key_id}")


def new_master_key(
    key_id: Annotated[str, typer.Argument(help="A name for the key: letters, digits, '_', '.', '-'.")],
) -> None:
    """Print a new random master key as a POISE_MASTER_KEYS entry (id:base64); keep it secret."""
    from poise.cli import fail
    from poise_common.crypto import new_master_key_entry

    try:
        print(new_master_key_entry(key_id))
    except ValueError as exc:
        fail(str(exc))


def purge(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")] = False,
    db: DbOption = None,
) -> None:
    """Remove now what is past its retention: expired interviews' rows, old erasure tombstones, and
    this host's expired, never-completed or erased upload folders (the purge job does this every
    POISE_RETENTION__PURGE_INTERVAL_S in running services)."""
    import asyncio

    from poise_common.audit_trail import AuditTrail
    from poise_fusion.retention import RetentionJob
    from poise_gateway.api import UploadDesk

    with _database(db) as (settings, sessions):
        media = UploadDesk(settings.media_dir, None, settings.gateway, default_role=settings.fusion.default_role)
        job = RetentionJob(sessions, settings.retention, media=media, audit=AuditTrail(sessions), actor=operator())
        report = asyncio.run(job.run_once(dry_run=dry_run))
    removed = report.removed
    verb = "would remove" if dry_run else "removed"
    print(f"{verb} {removed['interviews']} expired interviews' data, {removed['media_folders']} upload folders "
          f"and {report.tombstones} erasure tombstones")
    for kind, count in sorted(removed.items()):
        if count and kind not in ("interviews", "media_folders"):
            print(f"  {kind}: {count}")


@retention_app.command("set")
def set_retention(
    tenant: Annotated[str, typer.Argument(help="The tenant.")],
    days: Annotated[str, typer.Argument(help="Days an interview's data is kept (0 or more), or 'default'.")],
    db: DbOption = None,
) -> None:
    """Set how long a tenant's candidate data is kept; the purge job removes what is older."""
    from poise.cli import fail
    from poise_fusion.retention import set_tenant_retention

    value = None if days == "default" else int(days) if days.isdigit() else -1
    if value is not None and value < 0:
        fail(f"days must be a whole number of days (0 or more) or 'default', not {days!r}")
    with _database(db) as (settings, sessions):
        set_tenant_retention(sessions, tenant, value)
    shown = f"the default ({settings.retention.default_days} days)" if value is None else f"{value} days"
    print(f"{tenant}: candidate data is kept {shown}")


@retention_app.command("show")
def show_retention(
    tenant: Annotated[str, typer.Argument(help="The tenant.")],
    db: DbOption = None,
) -> None:
    """How long a tenant's candidate data is kept."""
    from poise_fusion.retention import tenant_retention

    with _database(db) as (settings, sessions):
        with sessions() as session:
            own = tenant_retention(session).get(tenant)
    print(f"{tenant}: {settings.retention.default_days if own is None else own} days"
          + (" (the default)" if own is None else ""))
