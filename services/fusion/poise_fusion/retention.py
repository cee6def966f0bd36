"""Retention: candidate data older than its tenant's retention is removed, as an erasure removes it.

A tenant keeps an interview's data ``retention_days`` after the interview's first record
(``tenant_settings.retention_days``; unset: the deployment's ``retention.default_days``). The
purge job (a background service of fusion, the gateway and ``poise serve``, every
``retention.purge_interval_s``; ``poise purge`` runs it once) removes:

- in the database (fusion, ``poise serve``): every row about an expired interview, and the
  tombstones of erasures older than ``retention.tombstone_days``;
- on the gateway's disk (gateway, ``poise serve``): the manifest and media of expired
  interviews, of interviews never completed within ``retention.upload_max_age_days``, and of
  erased interviews (an erasure served by another gateway replica finds them here).

Counts go to the log and, per tenant, to the audit log (``media.purge``); never candidate data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from poise_common.audit_trail import record_access
from poise_common.db.models import (
    CandidateInterview,
    Demographics,
    Failure,
    GreenhouseTest,
    Interview,
    TenantSettings,
    WebhookDelivery,
)
from poise_common.settings import RetentionSettings
from poise_fusion.erasure import checkpoint, erase_rows
from poise_fusion.store import ERASED_REASON

if TYPE_CHECKING:
    from poise_common.audit_trail import AuditTrail

log = logging.getLogger(__name__)

DAY_S = 86400.0
# Every table whose rows name an interview and when they were made: an interview expires with its oldest row.
_DATED = (
    (Interview.id, Interview.tenant, Interview.created_at),
    (CandidateInterview.interview_id, CandidateInterview.tenant, CandidateInterview.created_at),
    (GreenhouseTest.id, GreenhouseTest.tenant, GreenhouseTest.created_at),
    (Demographics.interview_id, Demographics.tenant, Demographics.created_at),
    (WebhookDelivery.interview_id, WebhookDelivery.tenant, WebhookDelivery.created_at),
    (Failure.interview_id, Failure.tenant, Failure.created_at),
)


class MediaSweeper(Protocol):
    """The gateway's interview folders (its UploadDesk)."""

    def folder_ids(self) -> list[str]: ...

    async def sweep(self, expired: Callable[[Any], bool], *, orphans_before: float,
                    dry_run: bool = False) -> list[tuple[str | None, str, int]]: ...


@dataclass
class PurgeReport:
    """What a purge removed (or, dry, would remove): per tenant, counts by kind."""

    dry_run: bool
    tenants: dict[str, Counter] = field(default_factory=dict)
    tombstones: int = 0

    def add(self, tenant: str, counts: Counter) -> None:
        self.tenants.setdefault(tenant, Counter()).update(counts)

    @property
    def removed(self) -> Counter:
        total: Counter = Counter()
        for counts in self.tenants.values():
            total.update(counts)
        return total


def tenant_retention(session: Session) -> dict[str, int]:
    """Tenants with a retention of their own, in days."""
    return dict(session.execute(select(TenantSettings.tenant, TenantSettings.retention_days)
                                .where(TenantSettings.retention_days.is_not(None))).all())


def set_tenant_retention(sessions: sessionmaker, tenant: str, days: int | None) -> None:
    """Set (None: clear, so the deployment's default applies) a tenant's retention."""
    if days is not None and days < 0:
        raise ValueError("retention is 0 days or more")
    with sessions.begin() as session:
        row = session.get(TenantSettings, tenant)
        if row is None:
            row = TenantSettings(tenant=tenant)
            session.add(row)
        row.retention_days, row.updated_at = days, time.time()


def _expired(session: Session, custom: dict[str, int], default_days: int, now: float) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for interview_id, tenant, created_at in _DATED:
        queries = [select(interview_id, tenant).where(created_at < now - default_days * DAY_S,
                                                      tenant.not_in(list(custom)))]
        queries += [select(interview_id, tenant).where(tenant == name, created_at < now - days * DAY_S)
                    for name, days in custom.items()]
        for query in queries:
            if interview_id is Failure.interview_id:
                query = query.where(Failure.reason != ERASED_REASON)  # tombstones age out on their own
            for row_id, row_tenant in session.execute(query):
                found.setdefault(row_tenant, set()).add(row_id)
    return found


def purge_database(sessions: sessionmaker, settings: RetentionSettings, report: PurgeReport, now: float) -> None:
    """Remove (dry: count) the rows of expired interviews and old tombstones, in one transaction."""
    with sessions() as session:
        try:
            for tenant, ids in _expired(session, tenant_retention(session), settings.default_days, now).items():
                counts = erase_rows(session, tenant, ids, tombstone=False)
                counts["interviews"] = len(ids)
                report.add(tenant, counts)
            report.tombstones = session.execute(delete(Failure).where(
                Failure.reason == ERASED_REASON, Failure.created_at < now - settings.tombstone_days * DAY_S,
            )).rowcount
            if report.dry_run:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
    if not report.dry_run:
        checkpoint(sessions)


async def purge_media(media: MediaSweeper, sessions: sessionmaker, settings: RetentionSettings,
                      report: PurgeReport, now: float) -> None:
    """Remove (dry: count) interview folders that expired, were never completed in time, or were erased."""
    ids = await asyncio.to_thread(media.folder_ids)

    def lookups() -> tuple[dict[str, int], set[str]]:
        with sessions() as session:
            erased: set[str] = set()
            for start in range(0, len(ids), 500):
                erased.update(session.scalars(select(Failure.interview_id).where(
                    Failure.interview_id.in_(ids[start : start + 500]), Failure.reason == ERASED_REASON)))
            return tenant_retention(session), erased

    custom, erased = await asyncio.to_thread(lookups)
    unfinished_before = now - settings.upload_max_age_days * DAY_S

    def expired(manifest: Any) -> bool:
        days = custom.get(manifest.tenant, settings.default_days)
        return (manifest.interview_id in erased or manifest.created_at < now - days * DAY_S
                or (manifest.status != "completed" and manifest.created_at < unfinished_before))

    for tenant, _interview_id, files in await media.sweep(expired, orphans_before=unfinished_before,
                                                          dry_run=report.dry_run):
        report.add(tenant or "", Counter(media_folders=1, media_files=files))


class RetentionJob:
    """The purge job as a background service (``start``/``stop``), or once (``run_once``).

    ``database``: purge the rows (fusion, ``poise serve``); ``media``: the gateway's folders.
    """

    def __init__(self, sessions: sessionmaker, settings: RetentionSettings, *, database: bool = True,
                 media: MediaSweeper | None = None, audit: AuditTrail | None = None, actor: str = "system") -> None:
        self.sessions = sessions
        self.settings = settings
        self.database = database
        self.media = media
        self.audit = audit
        self.actor = actor
        self._task: asyncio.Task | None = None

    def enabled(self) -> bool:
        return self.database or self.media is not None

    async def start(self) -> None:
        if self.enabled():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("purge failed")
            await asyncio.sleep(self.settings.purge_interval_s)

    async def run_once(self, *, dry_run: bool = False, now: float | None = None) -> PurgeReport:
        now = time.time() if now is None else now
        report = PurgeReport(dry_run=dry_run)
        if self.database:
            await asyncio.to_thread(purge_database, self.sessions, self.settings, report, now)
        if self.media is not None:
            await purge_media(self.media, self.sessions, self.settings, report, now)
        removed = report.removed
        if removed or report.tombstones:
            log.info("purge %s", "would remove" if dry_run else "removed", extra={
                "interviews": removed["interviews"], "media_folders": removed["media_folders"],
                "rows": sum(v for k, v in removed.items() if k not in ("interviews", "media_folders", "media_files")),
                "media_files": removed["media_files"], "tombstones": report.tombstones,
            })
        if not dry_run:
            for tenant, counts in report.tenants.items():
                if tenant:
                    await record_access(self.audit, tenant=tenant, actor=self.actor, action="media.purge",
                                        detail={"removed": {k: v for k, v in counts.items() if v}})
        return report
