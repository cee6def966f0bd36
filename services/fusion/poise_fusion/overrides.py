"""Human review: a reviewer overrides a competency's score with a reason; the model's score stays.

Overrides are only ever added (``score_overrides``); the latest one per competency applies.
Every reader of a scorecard (REST, gRPC, Greenhouse) serves it through :func:`apply`, which
adds ``final_score`` and ``override`` to each competency and ``reviewed`` to the document.
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated
# dependencies as objects, and they are made inside create_override_router.

import asyncio
import logging
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from poise_common.api_auth import requires
from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_common.db.models import Failure, Interview, Scorecard, ScoreOverride

log = logging.getLogger(__name__)

REVIEW_SCOPE = "scores:review"


class NewOverride(BaseModel):
    """A reviewer's score for one competency of a scored interview."""

    competency: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="The competency's name, as in the scorecard."
    )
    score: float = Field(ge=0, le=100, allow_inf_nan=False, description="The reviewer's score, 0..100.")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)] = Field(
        description="Why the model's score was changed; kept with the override."
    )


class OverrideError(Exception):
    """Refused: ``status`` and ``code`` as the API answers them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _as_dict(row: ScoreOverride) -> dict:
    return {
        "id": row.id, "interview_id": row.interview_id, "competency": row.competency,
        "original_score": row.original_score, "score": row.score, "reason": row.reason,
        "reviewer": row.reviewer, "created_at": row.created_at,
    }


def overrides_of(session: Session, interview_id: str) -> list[dict]:
    """An interview's overrides, oldest first."""
    rows = session.scalars(
        select(ScoreOverride).where(ScoreOverride.interview_id == interview_id)
        .order_by(ScoreOverride.created_at, ScoreOverride.id)
    )
    return [_as_dict(row) for row in rows]


def apply(document: dict, overrides: Sequence[dict]) -> dict:
    """The scorecard as served: each competency's ``final_score`` (the latest override, else the model's
    score) and ``override``; the model's score and contributions as they were. ``document`` is not changed."""
    latest = {o["competency"]: o for o in overrides}  # oldest first, so the last one per competency stays
    competencies = []
    for competency in document.get("competencies", []):
        found = latest.get(competency["name"])
        override = None if found is None else {
            "score": found["score"], "reason": found["reason"], "reviewer": found["reviewer"], "at": found["created_at"],
        }
        final = competency.get("score") if override is None else override["score"]
        competencies.append({**competency, "final_score": final, "override": override})
    reviewed = any(c["override"] is not None for c in competencies)
    return {**document, "competencies": competencies, "reviewed": reviewed}


class OverrideStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def _own_interview(self, session: Session, tenant: str, interview_id: str) -> Interview | None:
        """The caller's interview; None when it is the caller's but failed (only its failure is kept)."""
        interview = session.get(Interview, interview_id)
        if interview is not None and interview.tenant == tenant:
            return interview
        failure = session.get(Failure, interview_id) if interview is None else None
        if failure is not None and failure.tenant == tenant:
            return None
        # Another tenant's interview does not exist for this caller.
        raise OverrideError(404, "not_found", "no such interview")

    def add(self, tenant: str, interview_id: str, new: NewOverride, reviewer: str) -> dict:
        """Record an override; the competency's model score at this moment is kept with it."""
        with self.sessions.begin() as session:
            interview = self._own_interview(session, tenant, interview_id)
            card = session.get(Scorecard, interview_id)
            if interview is None or interview.status != "scored" or card is None:
                raise OverrideError(409, "not_scored", "the interview is not scored yet")
            names = [c["name"] for c in card.document.get("competencies", [])]
            if new.competency not in names:
                raise OverrideError(
                    422, "unknown_competency",
                    f"no competency {new.competency!r} in this scorecard; it has {', '.join(names)}",
                )
            original = next(c.get("score") for c in card.document["competencies"] if c["name"] == new.competency)
            row = ScoreOverride(
                interview_id=interview_id, tenant=tenant, competency=new.competency, original_score=original,
                score=new.score, reason=new.reason, reviewer=reviewer,
            )
            session.add(row)
            session.flush()
            stored = _as_dict(row)
        # Ids and names of the framework only: the reason may quote the candidate.
        log.info("score override recorded", extra={
            "interview_id": interview_id, "tenant": tenant, "competency": new.competency, "reviewer": reviewer,
        })
        return stored

    def history(self, tenant: str, interview_id: str) -> list[dict]:
        """Every override of the interview, oldest first."""
        with self.sessions() as session:
            self._own_interview(session, tenant, interview_id)
            return overrides_of(session, interview_id)


def _error(exc: OverrideError) -> JSONResponse:
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)


_RESPONSES = {
    404: {"description": "No such interview for this key's tenant."},
    409: {"description": "The interview is not scored (yet)."},
    422: {"description": "Unknown competency, or a score outside 0..100, or an empty or overlong reason."},
}


def create_override_router(store: OverrideStore, keys: KeyStore, audit: AuditTrail | None = None) -> APIRouter:
    """``/v1/interviews/{id}/overrides``: reviewers (scope scores:review) add, readers (scores:read) list;
    with ``audit``, each override and each reading of the history is recorded."""
    Reviewer = Annotated[Principal, Depends(requires(keys, REVIEW_SCOPE))]
    Reader = Annotated[Principal, Depends(requires(keys, "scores:read"))]
    InterviewId = Annotated[str, Path(min_length=1, max_length=64)]
    router = APIRouter(prefix="/v1/interviews", tags=["review"], responses=_RESPONSES)

    @router.post("/{interview_id}/overrides", status_code=201)
    async def add_override(interview_id: InterviewId, body: NewOverride, caller: Reviewer) -> JSONResponse:
        """Override one competency's score with a reason; the model's score is kept beside it."""
        try:
            stored = await asyncio.to_thread(store.add, caller.tenant, interview_id, body, caller.key_id)
        except OverrideError as exc:
            return _error(exc)
        # The framework's name and the numbers only: the reason may quote the candidate.
        await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="score.override",
                            interview_id=interview_id, detail={
                                "override_id": stored["id"], "competency": stored["competency"],
                                "score": stored["score"], "original_score": stored["original_score"]})
        return JSONResponse(stored, status_code=201)

    @router.get("/{interview_id}/overrides")
    async def list_overrides(interview_id: InterviewId, caller: Reader) -> JSONResponse:
        """The interview's overrides, oldest first (the latest per competency applies)."""
        try:
            items = await asyncio.to_thread(store.history, caller.tenant, interview_id)
        except OverrideError as exc:
            return _error(exc)
        await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="scorecard.read",
                            interview_id=interview_id, detail={"via": "rest", "part": "overrides"})
        return JSONResponse({"items": items})

    return router
