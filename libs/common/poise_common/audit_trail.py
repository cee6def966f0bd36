"""The audit log: an append-only, hash-chained record of every access to candidate data and of
every score, override and erasure (table ``audit_events``).

Entry ``n`` carries ``hash = sha256(prev_hash + canonical JSON of [seq, at, tenant, actor, action,
interview_id, detail])`` and the hash of entry ``n - 1`` as ``prev_hash`` (64 zeros for the first),
so a changed, removed or reordered entry breaks the chain from there on; :func:`verify` finds the
first such entry. Appends are serialised across threads and processes (SQLite: the write lock
taken by ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so two writers
never fork the chain; the primary key on ``seq`` and the unique ``hash`` back that up.

Rows are never updated. The only deletion is :func:`prune`, which removes entries older than the
kept period from the start of the chain and appends a checkpoint naming the hash the chain now
continues from. ``detail`` holds ids, names of the framework and counts, never personal data.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi import HTTPException
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from poise_common.db.models import AuditEvent

log = logging.getLogger(__name__)

GENESIS = "0" * 64
# The least any deployment keeps (EU AI Act Art. 26: 6 months), as the audit_log_retention_days setting.
MIN_RETENTION_DAYS = 183
# The tenant of entries about the log itself (a prune checkpoint); no tenant can be named so.
LOG_TENANT = "*"
PRUNE_ACTION = "audit_log.prune"
ACTIONS = frozenset({
    "scorecard.read", "scorecard.list", "events.subscribe", "interview.create", "answer.upload",
    "consent.record", "interview.complete", "interview.scored", "score.override", "demographics.write",
    "audit.run", "webhook.replay", "candidate.erase", "media.purge", "media.read", "key.rotate", PRUNE_ACTION,
})
# Keys that name personal data: refused in ``detail`` whoever passes them.
_PRIVATE_KEYS = frozenset({
    "name", "first_name", "last_name", "candidate_name", "email", "candidate_email", "phone_number",
    "candidate_ref", "transcript", "text", "words", "reason", "sex", "race_ethnicity",
})
# pg_advisory_xact_lock key of the log's appends: any fixed 64-bit number no other lock uses.
_PG_LOCK_KEY = 0x706F697365617564  # "poiseaud"
_APPEND_ATTEMPTS = 3
EXPORT_COLUMNS = ("seq", "at", "time", "tenant", "actor", "action", "interview_id", "detail", "prev_hash", "hash")


class AuditUnavailable(HTTPException):
    """The entry for an access could not be written, so the access is refused: HTTP 503
    ``audit_unavailable`` (its ``status``, ``code`` and ``message`` also map it to gRPC UNAVAILABLE)."""

    status = 503
    code = "audit_unavailable"
    message = "the audit log cannot be written right now, so this request was refused; retry shortly"

    def __init__(self) -> None:
        super().__init__(503, detail={"code": self.code, "message": self.message}, headers={"Retry-After": "5"})


def entry_hash(prev_hash: str, seq: int, at: float, tenant: str, actor: str, action: str,
               interview_id: str | None, detail: dict | None) -> str:
    body = json.dumps([seq, at, tenant, actor, action, interview_id, detail], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _canonical_detail(detail: dict | None) -> dict | None:
    """``detail`` as the database gives it back (tuples as lists), so its hash verifies later."""
    if detail is None:
        return None
    private = sorted(_PRIVATE_KEYS & set(detail))
    if private:
        raise ValueError(f"audit detail cannot hold personal data ({', '.join(private)})")
    return json.loads(json.dumps(detail, sort_keys=True, allow_nan=False))


def _serialise_appends(session: Session) -> None:
    """Hold the log's append lock until this transaction ends (the first statement of it)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # The write lock now, not at the INSERT: the tail read below is then the real tail.
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    else:
        raise RuntimeError(f"the audit log does not support {dialect} databases")


def _append(session: Session, *, tenant: str, actor: str, action: str, interview_id: str | None,
            detail: dict | None) -> AuditEvent:
    tail = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev_hash = (tail[0] + 1, tail[1]) if tail else (1, GENESIS)
    at = time.time()
    row = AuditEvent(
        seq=seq, at=at, tenant=tenant, actor=actor, action=action, interview_id=interview_id, detail=detail,
        prev_hash=prev_hash, hash=entry_hash(prev_hash, seq, at, tenant, actor, action, interview_id, detail),
    )
    session.add(row)
    session.flush()
    return row


class AuditTrail:
    """Appends entries to the audit log on ``sessions``' database."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions
        # This process's threads queue here rather than at the database's lock.
        self._lock = threading.Lock()

    def record(self, *, tenant: str, actor: str, action: str, interview_id: str | None = None,
               detail: dict | None = None) -> None:
        """Append one hash-chained entry (table audit_events, model poise_common.db.models.AuditEvent);
        safe with concurrent writers on SQLite and PostgreSQL. `detail` never holds personal data."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        detail = _canonical_detail(detail)
        for attempt in range(1, _APPEND_ATTEMPTS + 1):
            try:
                with self._lock, self.sessions() as session, session.begin():
                    _serialise_appends(session)
                    _append(session, tenant=tenant, actor=actor, action=action, interview_id=interview_id,
                            detail=detail)
                return
            except IntegrityError:
                # Only a writer that skipped the lock can take our seq; the next attempt reads the new tail.
                if attempt == _APPEND_ATTEMPTS:
                    raise

    async def record_async(self, *, tenant: str, actor: str, action: str, interview_id: str | None = None,
                           detail: dict | None = None) -> None:
        """:meth:`record` in a thread; any failure raises :class:`AuditUnavailable` (the access must fail)."""
        try:
            await asyncio.to_thread(self.record, tenant=tenant, actor=actor, action=action,
                                    interview_id=interview_id, detail=detail)
        except Exception as exc:
            log.error("audit entry not written", extra={"action": action, "error": type(exc).__name__})
            raise AuditUnavailable() from exc


async def record_access(trail: AuditTrail | None, *, tenant: str, actor: str, action: str,
                        interview_id: str | None = None, detail: dict | None = None) -> None:
    """Record through ``trail`` (None: this deployment part keeps no audit log, e.g. in unit tests)."""
    if trail is not None:
        await trail.record_async(tenant=tenant, actor=actor, action=action, interview_id=interview_id, detail=detail)


# -- verification ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int  # entries checked
    first_bad_seq: int | None  # where the chain first breaks; None when it holds
    head_seq: int | None = None  # the newest entry: note its hash elsewhere to detect a cut tail later
    head_hash: str | None = None
    problem: str | None = None


def _rows(sessions: sessionmaker, *conditions, batch: int = 1000) -> Iterator[AuditEvent]:
    """Entries in chain order, a page per short read (no transaction held open while the caller works)."""
    after = 0
    while True:
        with sessions() as session:
            page = list(session.scalars(
                select(AuditEvent).where(AuditEvent.seq > after, *conditions).order_by(AuditEvent.seq).limit(batch)
            ))
        yield from page
        if len(page) < batch:
            return
        after = page[-1].seq


def _start_of_chain(sessions: sessionmaker, first: AuditEvent) -> str | None:
    """The hash the oldest kept entry must continue from: genesis, or what a prune checkpoint names."""
    if first.seq == 1:
        return GENESIS
    for checkpoint in _rows(sessions, AuditEvent.action == PRUNE_ACTION):
        detail = checkpoint.detail or {}
        if detail.get("pruned_through_seq") == first.seq - 1:
            return detail.get("continues_from")
    return None


def verify(sessions: sessionmaker) -> VerifyResult:
    """Walk the whole chain: every entry's seq, link and hash."""
    expected_seq, prev_hash, count, last = None, None, 0, None
    for row in _rows(sessions):
        if expected_seq is None:
            prev_hash = _start_of_chain(sessions, row)
            if prev_hash is None:
                return VerifyResult(False, count, row.seq, problem="entries before it are missing and no prune "
                                    "checkpoint accounts for them")
            expected_seq = row.seq
        if row.seq != expected_seq:
            return VerifyResult(False, count, expected_seq, problem="missing entry")
        if row.prev_hash != prev_hash:
            return VerifyResult(False, count, row.seq, problem="does not continue from the entry before it")
        recomputed = entry_hash(row.prev_hash, row.seq, row.at, row.tenant, row.actor, row.action,
                                row.interview_id, row.detail)
        if recomputed != row.hash:
            return VerifyResult(False, count, row.seq, problem="its content does not match its hash")
        count, expected_seq, prev_hash, last = count + 1, row.seq + 1, row.hash, row
    return VerifyResult(True, count, None, last.seq if last else None, last.hash if last else None)


# -- retention -------------------------------------------------------------------------------------
def validate_retention_days(days: float) -> float:
    if days < MIN_RETENTION_DAYS:
        raise ValueError(f"the audit log is kept at least {MIN_RETENTION_DAYS} days (6 months), not {days:g}")
    return days


@dataclass(frozen=True)
class PruneResult:
    pruned: int
    through_seq: int | None  # the last entry removed
    checkpoint_seq: int | None  # the checkpoint entry appended (None when nothing was old enough)


def prune(sessions: sessionmaker, *, keep_days: float, actor: str, now: float | None = None) -> PruneResult:
    """Remove the entries older than ``keep_days`` from the start of the chain, after appending a
    checkpoint that carries the hash the remaining chain continues from (so :func:`verify` holds)."""
    validate_retention_days(keep_days)
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    with sessions() as session, session.begin():
        _serialise_appends(session)
        oldest = session.scalar(select(func.min(AuditEvent.seq)))
        if oldest is None:
            return PruneResult(0, None, None)
        # Only a prefix goes: everything before the first entry young enough to keep.
        first_kept = session.scalar(select(func.min(AuditEvent.seq)).where(AuditEvent.at >= cutoff))
        through = first_kept - 1 if first_kept is not None else session.scalar(select(func.max(AuditEvent.seq)))
        if through < oldest:
            return PruneResult(0, None, None)
        pruned = select(func.count()).select_from(AuditEvent).where(AuditEvent.seq <= through)
        detail = {
            "pruned_through_seq": through,
            "continues_from": session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == through)),
            "pruned": session.scalar(pruned),
            "cutoff": round(cutoff, 3),
        }
        # Appended first, so it links to the current tail even when every older entry goes.
        checkpoint = _append(session, tenant=LOG_TENANT, actor=actor, action=PRUNE_ACTION, interview_id=None,
                             detail=detail)
        session.execute(delete(AuditEvent).where(AuditEvent.seq <= through))
    log.info("audit log pruned", extra={"pruned": detail["pruned"], "through_seq": through})
    return PruneResult(detail["pruned"], through, checkpoint.seq)


# -- export ----------------------------------------------------------------------------------------
def parse_time(value: str) -> float:
    """Unix seconds from an ISO-8601 date or date-time (UTC unless it names a zone), or Unix seconds."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"{value!r} is not a time")
        return seconds
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 date or date-time, nor Unix seconds") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def as_record(row: AuditEvent) -> dict:
    """An entry as exported: every stored field, plus its time in ISO-8601 (UTC)."""
    return {
        "seq": row.seq, "at": row.at,
        "time": datetime.fromtimestamp(row.at, timezone.utc).isoformat().replace("+00:00", "Z"),
        "tenant": row.tenant, "actor": row.actor, "action": row.action, "interview_id": row.interview_id,
        "detail": row.detail, "prev_hash": row.prev_hash, "hash": row.hash,
    }


def entries(sessions: sessionmaker, *, tenant: str | None = None, since: float | None = None,
            until: float | None = None, action: str | None = None) -> Iterator[dict]:
    """Entries in chain order, filtered: ``tenant``, ``since`` <= at < ``until`` (Unix seconds), ``action``."""
    conditions = []
    if tenant is not None:
        conditions.append(AuditEvent.tenant == tenant)
    if since is not None:
        conditions.append(AuditEvent.at >= since)
    if until is not None:
        conditions.append(AuditEvent.at < until)
    if action is not None:
        conditions.append(AuditEvent.action == action)
    for row in _rows(sessions, *conditions):
        yield as_record(row)


def jsonl_lines(records: Iterator[dict]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _cell(record: dict, column: str) -> object:
    value = record[column]
    if column == "detail" and value is not None:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return "" if value is None else value


def csv_lines(records: Iterator[dict]) -> Iterator[str]:
    """CSV with a header row; ``detail`` as a JSON cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(EXPORT_COLUMNS)
    for record in records:
        yield line([_cell(record, column) for column in EXPORT_COLUMNS])
