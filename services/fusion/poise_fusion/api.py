"""The scorecard API: what fusion stored for an interview, by its id.

``GET /v1/interviews/{interview_id}/scorecard`` answers 200 with the scorecard (the document
``poise score --json`` prints, with reviewers' overrides applied: see overrides.py),
202 ``{"status": "processing"}`` while it is being scored,
422 ``{"status": "failed", "error": {"code": ..., "message": ...}}`` when it could not be scored
(see :func:`failure_error`), and 404 when the interview is unknown (including right after the
gateway published it, until fusion has seen its first message).
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated
# dependencies as objects, and they are made inside create_router.

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from poise_common.api_auth import requires
from poise_common.api_errors import Error, ErrorDetail
from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_common.paging import BadCursor, decode_cursor, page_of
from poise_common.settings import PoiseSettings
from poise_fusion.events import EventHub
from poise_fusion.store import FusionStore


class ScoringInProgress(BaseModel):
    status: Literal["processing"]


class ScoringFailed(BaseModel):
    """The interview could not be scored: why, as an error."""

    status: Literal["failed"]
    error: ErrorDetail


class InterviewSummary(BaseModel):
    interview_id: str
    role: str | None = Field(description="Its competency profile; null until announced, and for a failed interview.")
    status: Literal["processing", "scored", "failed"]
    answer_count: int | None = Field(description="How many answers it has; null as role is.")
    created_at: float = Field(description="When fusion first saw it (Unix time, seconds).")
    scored_at: float | None = Field(description="When it was scored (Unix time, seconds); null until then.")


class InterviewPage(BaseModel):
    items: list[InterviewSummary] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


_RESPONSES = {
    202: {"model": ScoringInProgress, "description": "Still being scored."},
    404: {"description": "No such interview (code not_found)."},
    422: {"model": ScoringFailed | Error,
          "description": "The interview could not be scored (`status` failed, and why), or the id is not valid."},
}


def failure_error(reason: str | None) -> dict[str, str]:
    """Why an interview could not be scored, as the API's error: a code to act on and the stored
    reason. Every reason is written by fusion itself (a policy's consent refusal, or a role whose
    competency framework cannot be used) and names no candidate, so it is safe to show."""
    # The consent refusal is the one failure the caller fixes by asking the candidate; the same
    # code as the gateway's refusal to complete such an interview.
    code = "consent_required" if reason and "consent" in reason else "not_scorable"
    return {"code": code, "message": reason or "the interview could not be scored"}


def create_router(
    store: FusionStore, settings: PoiseSettings, keys: KeyStore, events: EventHub | None = None,
    audit: AuditTrail | None = None,
) -> APIRouter:
    """The scorecard routes on ``store``; the caller's API key (scope scores:read) decides the tenant.
    With ``audit``, every scorecard served, listing and event subscription is recorded first."""
    Caller = Annotated[Principal, Depends(requires(keys, "scores:read"))]
    InterviewId = Annotated[str, Path(min_length=1, max_length=64)]
    router = APIRouter(prefix="/v1/interviews", tags=["scorecards"])

    if events is not None:
        events_router = APIRouter(prefix="/v1", tags=["events"])

        @events_router.get("/events", response_class=StreamingResponse)
        async def score_events(caller: Caller) -> StreamingResponse:
            """Server-sent events: answer.scored, interview.scored, interview.failed for the caller's tenant."""
            await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="events.subscribe",
                                detail={"via": "sse"})
            return StreamingResponse(
                events.stream(caller.tenant), media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )


    @router.get("", responses={200: {"model": InterviewPage, "description": "A page of interviews."}})
    async def list_interviews(
        caller: Caller,
        status: Annotated[str | None, Query(pattern="^(processing|scored|failed)$")] = None,
        role: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=512, description="The next_cursor of the previous page.")] = None,
    ) -> JSONResponse:
        """The caller's interviews, newest first, filterable by status and role."""
        try:
            after = decode_cursor(cursor)
        except BadCursor as exc:
            return JSONResponse({"error": {"code": "invalid_cursor", "message": str(exc)}}, status_code=422)
        rows = await asyncio.to_thread(
            store.list_interviews, caller.tenant, status=status, role=role, limit=limit + 1, after=after
        )
        items, cursor = page_of(rows, limit)
        await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="scorecard.list",
                            detail={"via": "rest", "interview_ids": [i["interview_id"] for i in items]})
        return JSONResponse({"items": items, "next_cursor": cursor})

    @router.get("/{interview_id}/scorecard", responses=_RESPONSES)
    async def get_scorecard(interview_id: InterviewId, caller: Caller) -> JSONResponse:
        """The interview's scorecard, or where its scoring stands."""
        found = await asyncio.to_thread(store.interview_status, interview_id)
        # Another tenant's interview does not exist for this caller.
        if found is None or found[0] != caller.tenant:
            return JSONResponse({"error": {"code": "not_found", "message": "no such interview"}}, status_code=404)
        status = found[1]
        if status == "failed":
            reason = await asyncio.to_thread(store.failure_reason, interview_id)
            return JSONResponse({"status": "failed", "error": failure_error(reason)}, status_code=422)
        if status == "scored":
            document = await asyncio.to_thread(store.reviewed_scorecard, interview_id)
            if document is not None:
                await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="scorecard.read",
                                    interview_id=interview_id, detail={"via": "rest"})
                return JSONResponse(document)
        return JSONResponse({"status": "processing"}, status_code=202)

    api = APIRouter()
    api.include_router(router)
    if events is not None:
        api.include_router(events_router)
    return api
