"""Erasure: everything held about a candidate, removed on request, with a receipt.

Interviews are found by the caller's reference for the candidate (``candidate_ref`` when the
interview was opened), kept only as a keyed hash (HMAC-SHA256, table ``candidate_interviews``),
and for interviews Greenhouse ordered by the candidate's email. For each one the gateway's
media and manifest go, then in one transaction every row about it: answers and their parts
(transcripts), vision frames, the scorecard, overrides, demographics, webhook deliveries, the
Greenhouse order (with the candidate's name and email). What stays: a tombstone (the interview
id and tenant, nothing else) so that fusion drops messages still on the bus for it instead of
storing them again (removed after ``retention.tombstone_days``), the receipt (counts only; the
reference as its hash) and the audit log's entry. On SQLite, deleted content is overwritten
(secure_delete, set on every connection by poise_common.db.engine) and the write-ahead log is
checkpointed away, so nothing lingers in the file.

The request is served inline (seconds): ``DELETE /v1/candidates/{ref}`` answers 200 with the
receipt, ``GET /v1/erasures/{id}`` shows it again. The gateway serves both, since it holds
the media and the database; ``poise serve`` does too.
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated dependencies as objects.

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Protocol

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from poise_common.api_auth import requires
from poise_common.audit_trail import record_access
from poise_common.auth import KeyStore, Principal
from poise_common.crypto import KeyRing
from poise_common.db.models import (
    Answer,
    AnswerPart,
    CandidateInterview,
    Demographics,
    Erasure,
    Failure,
    GreenhouseTest,
    Interview,
    Scorecard,
    ScoreOverride,
    VisionFrame,
    WebhookDelivery,
)
from poise_fusion.store import ERASED_REASON

if TYPE_CHECKING:
    from poise_common.audit_trail import AuditTrail

log = logging.getLogger(__name__)

SCOPE = "candidates:erase"
# What a receipt counts, in this order; "interviews" is how many of the candidate's were erased.
KINDS = (
    "interviews", "media_files", "answers", "answer_parts", "vision_frames", "scorecards", "score_overrides",
    "demographics", "webhook_deliveries", "greenhouse_tests", "failures", "candidate_interviews",
)
_BATCH = 500  # ids per statement: far below every database's limit on bound parameters


class MediaShelf(Protocol):
    """Where the gateway keeps interviews' media (its UploadDesk)."""

    async def erase(self, interview_id: str) -> int:
        """Delete everything held for the interview; how many files."""


class CandidateIndex:
    """Which interviews belong to a candidate, by a keyed hash of the caller's reference."""

    def __init__(self, sessions: sessionmaker, keys: KeyRing) -> None:
        self.sessions = sessions
        self.keys = keys

    def record(self, tenant: str, interview_id: str, reference: str) -> None:
        with self.sessions.begin() as session:
            session.merge(CandidateInterview(
                interview_id=interview_id, tenant=tenant, candidate_ref_hash=self.keys.ref_hash(tenant, reference),
            ))

    def interviews(self, tenant: str, reference: str) -> tuple[str, list[str]]:
        """The reference's hash, and the tenant's interviews recorded with it or ordered by
        Greenhouse for that email address."""
        digest = self.keys.ref_hash(tenant, reference)
        email = reference.strip().lower()
        with self.sessions() as session:
            found = set(session.scalars(select(CandidateInterview.interview_id).where(
                CandidateInterview.tenant == tenant, CandidateInterview.candidate_ref_hash == digest)))
            if "@" in email:
                found.update(session.scalars(select(GreenhouseTest.id).where(
                    GreenhouseTest.tenant == tenant, func.lower(GreenhouseTest.candidate_email) == email)))
        return digest, sorted(found)


def _batches(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _BATCH):
        yield ids[start : start + _BATCH]


def erase_rows(session: Session, tenant: str, interview_ids: Iterable[str], *, tombstone: bool) -> Counter:
    """Delete every row about the tenant's interviews ``interview_ids``; counts per kind. With
    ``tombstone``, leave each id behind (and nothing else) so late messages for it are dropped."""
    counts: Counter = Counter()
    ids = sorted(set(interview_ids))
    for batch in _batches(ids):
        owned = select(Interview.id).where(Interview.tenant == tenant, Interview.id.in_(batch))
        answers = select(Answer.id).where(Answer.interview_id.in_(owned))
        statements = {
            "answer_parts": delete(AnswerPart).where(AnswerPart.answer_id.in_(answers)),
            "vision_frames": delete(VisionFrame).where(VisionFrame.answer_id.in_(answers)),
            "answers": delete(Answer).where(Answer.interview_id.in_(owned)),
            "score_overrides": delete(ScoreOverride).where(
                ScoreOverride.tenant == tenant, ScoreOverride.interview_id.in_(batch)),
            "scorecards": delete(Scorecard).where(Scorecard.tenant == tenant, Scorecard.interview_id.in_(batch)),
            "demographics": delete(Demographics).where(
                Demographics.tenant == tenant, Demographics.interview_id.in_(batch)),
            "webhook_deliveries": delete(WebhookDelivery).where(
                WebhookDelivery.tenant == tenant, WebhookDelivery.interview_id.in_(batch)),
            "greenhouse_tests": delete(GreenhouseTest).where(
                GreenhouseTest.tenant == tenant, GreenhouseTest.id.in_(batch)),
            "failures": delete(Failure).where(
                Failure.tenant == tenant, Failure.interview_id.in_(batch), Failure.reason != ERASED_REASON),
            "candidate_interviews": delete(CandidateInterview).where(
                CandidateInterview.tenant == tenant, CandidateInterview.interview_id.in_(batch)),
        }
        for kind, statement in statements.items():
            counts[kind] += session.execute(statement.execution_options(synchronize_session=False)).rowcount
        session.execute(delete(Interview).where(Interview.tenant == tenant, Interview.id.in_(batch)))
        if tombstone:
            session.execute(delete(Failure).where(Failure.interview_id.in_(batch)))
            session.add_all(Failure(interview_id=i, tenant=tenant, reason=ERASED_REASON) for i in batch)
    return counts


def checkpoint(sessions: sessionmaker) -> None:
    """SQLite: move the write-ahead log into the database file and empty it, so old page images
    (with deleted rows) do not linger there. PostgreSQL reclaims deleted rows with its vacuum."""
    with sessions() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


class Receipt(BaseModel):
    erasure_id: str
    status: str = Field(description="completed, or pending while it runs (or if it was interrupted: repeat it).")
    requested_at: float = Field(description="Unix time the request arrived.")
    completed_at: float | None = Field(description="Unix time everything was removed.")
    interviews: int = Field(description="How many of the candidate's interviews were erased.")
    removed: dict[str, int] = Field(description="What was removed, by kind: files and database rows.")


def _receipt(row: Erasure) -> Receipt:
    removed = {kind: int((row.removed or {}).get(kind, 0)) for kind in KINDS}
    return Receipt(erasure_id=row.id, status=row.status, requested_at=row.requested_at,
                   completed_at=row.completed_at, interviews=removed["interviews"], removed=removed)


class Eraser:
    """Erases a candidate's interviews: the media on ``media`` (None: this process holds none),
    then the database rows; records the erasure in the audit log."""

    def __init__(self, sessions: sessionmaker, candidates: CandidateIndex, media: MediaShelf | None = None,
                 audit: "AuditTrail | None" = None) -> None:
        self.sessions = sessions
        self.candidates = candidates
        self.media = media
        self.audit = audit

    async def erase_candidate(self, tenant: str, reference: str, actor: str) -> Receipt:
        digest, interview_ids = await asyncio.to_thread(self.candidates.interviews, tenant, reference)
        erasure = Erasure(id=secrets.token_hex(16), tenant=tenant, candidate_ref_hash=digest, status="pending",
                          requested_at=time.time())
        await asyncio.to_thread(self._add, erasure)
        files = 0
        # Media first: if anything fails after, the index still finds the interviews for a retry.
        if self.media is not None:
            for interview_id in interview_ids:
                files += await self.media.erase(interview_id)
        row = await asyncio.to_thread(self._erase_rows, erasure.id, tenant, interview_ids, files)
        await asyncio.to_thread(checkpoint, self.sessions)
        receipt = _receipt(row)
        log.info("candidate erased", extra={"erasure_id": erasure.id, "interviews": len(interview_ids)})
        await record_access(self.audit, tenant=tenant, actor=actor, action="candidate.erase",
                            detail={"erasure_id": erasure.id, "interviews": len(interview_ids),
                                    "removed": receipt.removed})
        return receipt

    def _add(self, row: Erasure) -> None:
        with self.sessions.begin() as session:
            session.add(row)

    def _erase_rows(self, erasure_id: str, tenant: str, interview_ids: list[str], files: int) -> Erasure:
        with self.sessions.begin() as session:
            counts = erase_rows(session, tenant, interview_ids, tombstone=True)
            counts.update(interviews=len(interview_ids), media_files=files)
            row = session.get(Erasure, erasure_id)
            row.status, row.completed_at = "completed", time.time()
            row.removed = {kind: counts[kind] for kind in KINDS}
            return row

    def receipt(self, tenant: str, erasure_id: str) -> Receipt | None:
        with self.sessions() as session:
            row = session.get(Erasure, erasure_id)
            return None if row is None or row.tenant != tenant else _receipt(row)


def create_erasure_router(eraser: Eraser, keys: KeyStore) -> APIRouter:
    """``DELETE /v1/candidates/{ref}`` and ``GET /v1/erasures/{id}`` (scope candidates:erase or admin)."""
    Caller = Annotated[Principal, Depends(requires(keys, SCOPE))]
    router = APIRouter(prefix="/v1", tags=["erasure"])

    @router.delete("/candidates/{ref:path}", responses={422: {"description": "The reference is empty or too long."}})
    async def erase_candidate(ref: Annotated[str, Path(min_length=1, max_length=320)], caller: Caller) -> Receipt:
        """Erase everything held about the candidate with this reference (the candidate_ref given when
        their interviews were opened, or the email of a Greenhouse order); returns the receipt."""
        return await eraser.erase_candidate(caller.tenant, ref, caller.key_id)

    @router.get("/erasures/{erasure_id}", responses={404: {"description": "No such erasure."}})
    async def erasure(erasure_id: Annotated[str, Path(max_length=64)], caller: Caller) -> Receipt:
        """An erasure's receipt (the caller's tenant's only)."""
        found = await asyncio.to_thread(eraser.receipt, caller.tenant, erasure_id)
        if found is None:
            return JSONResponse({"error": {"code": "not_found", "message": "no such erasure"}}, status_code=404)
        return found

    return router
