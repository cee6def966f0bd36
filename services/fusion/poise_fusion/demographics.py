"""Self-reported demographics for bias audits, and the audit's REST routes.

Demographics are kept in their own table, never read by scoring and never written to a log;
only the audit joins them with the stored scores, one tenant at a time.
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated dependencies as objects.

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from poise_common.api_auth import requires
from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_common.db.models import Demographics, Failure, Interview, Scorecard
from poise_fusion.audit import (
    CATEGORIES,
    DEFAULT_MIN_SHARE,
    OVERALL,
    AuditError,
    AuditRecord,
    normalise_category,
    run_audit,
    subject_score,
)
from poise_fusion.audit_report import render


@dataclass
class ScoredSample:
    """A tenant's scores for one role and subject, keyed by interview id."""

    scores: dict[str, float]
    unscored: int  # scored interviews of the role without a score for the subject
    demographics: dict[str, tuple[str | None, str | None]]  # stored (sex, race_ethnicity) per interview

    def records(self, demographics: dict[str, tuple[str | None, str | None]] | None = None) -> list[AuditRecord]:
        """Audit records with the stored demographics, or ``demographics`` given instead; absent: unknown."""
        source = self.demographics if demographics is None else demographics
        return [AuditRecord(i, score, *source.get(i, (None, None))) for i, score in self.scores.items()]


def data_source(tenant: str, role: str, demographics_from: str | None = None) -> str:
    """The audit's data source in words; ``demographics_from`` names a file given instead of the stored ones."""
    origin = f"from {demographics_from}" if demographics_from else "self-reported by candidates and stored with Poise"
    return f"Poise scorecards of tenant {tenant}, role {role}; sex and race/ethnicity {origin}"


class DemographicsStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    @staticmethod
    def _owner(session: Session, interview_id: str) -> str | None:
        """The tenant an interview id belongs to, wherever it was first seen; None if nowhere."""
        for model, key in ((Interview, Interview.id), (Failure, Failure.interview_id),
                           (Demographics, Demographics.interview_id)):
            tenant = session.scalar(select(model.tenant).where(key == interview_id))
            if tenant is not None:
                return tenant
        return None

    def put(self, interview_id: str, tenant: str, sex: str | None, race_ethnicity: str | None) -> dict | None:
        """Store (or replace) the answers; None when another tenant owns ``interview_id``.

        Raises AuditError for a value outside the audit's categories. An id nobody owns yet is
        accepted: demographics may arrive before the interview is scored.
        """
        sex = normalise_category("sex", sex)
        race_ethnicity = normalise_category("race_ethnicity", race_ethnicity)
        for _attempt in range(2):
            try:
                with self.sessions.begin() as session:
                    owner = self._owner(session, interview_id)
                    if owner is not None and owner != tenant:
                        return None
                    row = session.get(Demographics, interview_id)
                    if row is None:
                        session.add(Demographics(interview_id=interview_id, tenant=tenant, sex=sex,
                                                 race_ethnicity=race_ethnicity))
                    else:
                        row.sex, row.race_ethnicity = sex, race_ethnicity
                return {"interview_id": interview_id, "sex": sex, "race_ethnicity": race_ethnicity}
            except IntegrityError:
                continue  # another request inserted the same id meanwhile: look again at who owns it
        return None

    def get(self, interview_id: str, tenant: str) -> dict | None:
        with self.sessions() as session:
            row = session.get(Demographics, interview_id)
            if row is None or row.tenant != tenant:
                return None
            return {"interview_id": interview_id, "sex": row.sex, "race_ethnicity": row.race_ethnicity}

    def sample(self, tenant: str, role: str, competency: str | None = None) -> ScoredSample:
        """The tenant's scored interviews of ``role``: each one's score for ``competency`` (None:
        overall) and its stored demographics. Raises AuditError for a competency no scorecard has."""
        scores: dict[str, float] = {}
        demographics: dict[str, tuple[str | None, str | None]] = {}
        names: set[str] = set()
        unscored = 0
        # Only the competencies leave the database: the answers (transcripts) are not needed.
        query = (
            select(Scorecard.interview_id, Scorecard.document["competencies"], Demographics.sex,
                   Demographics.race_ethnicity)
            .join(Interview, Interview.id == Scorecard.interview_id)
            .outerjoin(Demographics, and_(Demographics.interview_id == Scorecard.interview_id,
                                          Demographics.tenant == tenant))
            .where(Scorecard.tenant == tenant, Interview.role == role)
        )
        with self.sessions() as session:
            for interview_id, competencies, sex, race_ethnicity in session.execute(query):
                competencies = competencies or []
                names.update(c.get("name") for c in competencies)
                score = subject_score({"competencies": competencies}, competency)
                if score is None:
                    unscored += 1
                    continue
                scores[interview_id] = score
                demographics[interview_id] = (sex, race_ethnicity)
        if competency not in (None, OVERALL) and names and competency not in names:
            known = ", ".join(sorted(n for n in names if n))
            raise AuditError(f"role {role} has no competency {competency!r}; its competencies: {known}")
        return ScoredSample(scores=scores, unscored=unscored, demographics=demographics)

    def records(self, tenant: str, role: str, competency: str | None = None) -> tuple[list[AuditRecord], int]:
        """Audit records from the stored demographics (none stored: unknown), and the unscored count."""
        found = self.sample(tenant, role, competency)
        return found.records(), found.unscored


class DemographicsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sex: str | None = Field(None, max_length=64, description="female, male, or unknown/decline (null: did not say).")
    race_ethnicity: str | None = Field(
        None, max_length=64, description="One of the EEO-1 race/ethnicity categories, or unknown/decline."
    )


_PUT_RESPONSES = {
    404: {"description": "The interview belongs to another tenant: `{\"error\": {\"code\": \"not_found\", ...}}`."},
    422: {"description": "A value outside the categories; `error.allowed` lists them."},
}
_AUDIT_RESPONSES = {
    200: {"description": "The audit report in the requested format.",
          "content": {"application/json": {}, "text/markdown": {}, "text/html": {}}},
    422: {"description": "No scored interviews, an unknown competency, or inconsistent options."},
}


def _error(status: int, code: str, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def create_demographics_router(store: DemographicsStore, keys: KeyStore, trail: AuditTrail | None = None) -> APIRouter:
    """PUT a candidate's demographics (interviews:write) and GET the tenant's bias audit (admin); with
    ``trail`` (the audit log), each is recorded (never the categories themselves)."""
    Writer = Annotated[Principal, Depends(requires(keys, "interviews:write"))]
    Admin = Annotated[Principal, Depends(requires(keys, "admin"))]
    InterviewId = Annotated[str, Path(min_length=1, max_length=64)]
    router = APIRouter(prefix="/v1", tags=["bias audit"])

    @router.put("/interviews/{interview_id}/demographics", responses=_PUT_RESPONSES)
    async def put_demographics(interview_id: InterviewId, body: DemographicsBody, caller: Writer) -> JSONResponse:
        """Record the candidate's self-reported sex and race/ethnicity (used by bias audits only)."""
        try:
            stored = await asyncio.to_thread(store.put, interview_id, caller.tenant, body.sex, body.race_ethnicity)
        except AuditError as exc:
            return _error(422, "invalid_demographics", str(exc), allowed={k: list(v) for k, v in CATEGORIES.items()})
        if stored is None:
            return _error(404, "not_found", "no such interview")
        await record_access(trail, tenant=caller.tenant, actor=caller.key_id, action="demographics.write",
                            interview_id=interview_id)
        return JSONResponse(stored)

    @router.get("/audit", responses=_AUDIT_RESPONSES)
    async def audit(
        caller: Admin,
        role: Annotated[str, Query(min_length=1, max_length=128, description="The role (framework) audited.")],
        competency: Annotated[str | None, Query(max_length=128, description="A competency; default overall.")] = None,
        mode: Annotated[str, Query(pattern="^(scoring_rate|selection_rate)$")] = "scoring_rate",
        threshold: Annotated[float | None, Query(description="selection_rate: the passing score.")] = None,
        min_share: Annotated[float, Query(ge=0, lt=1, description="Exclude categories under this share.")] = (
            DEFAULT_MIN_SHARE
        ),
        fmt: Annotated[str, Query(alias="format", pattern="^(json|markdown|html)$")] = "json",
    ) -> Response:
        """The bias audit of the caller's scored interviews of a role: rates and impact ratios by category."""

        def compute():
            records, unscored = store.records(caller.tenant, role, competency)
            return run_audit(records, role=role, competency=competency, mode=mode, threshold=threshold,
                             min_share=min_share, data_source=data_source(caller.tenant, role),
                             unscored=unscored)

        try:
            result = await asyncio.to_thread(compute)
        except AuditError as exc:
            return _error(422, "invalid_audit", str(exc))
        await record_access(trail, tenant=caller.tenant, actor=caller.key_id, action="audit.run", detail={
            "role": role, "competency": competency, "mode": mode, "format": fmt})
        if fmt == "json":
            return JSONResponse(result.to_json())
        if fmt == "html":
            return HTMLResponse(render(result, "html"))
        return PlainTextResponse(render(result, "markdown"), media_type="text/markdown; charset=utf-8")

    return router
