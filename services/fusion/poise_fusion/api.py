"""The scorecard API: what fusion stored for an interview, by its id.

``GET /v1/interviews/{interview_id}/scorecard`` answers 200 with the scorecard (the document
``poise score --json`` prints, with reviewers' overrides applied: see overrides.py),
202 ``{"status": "processing"}`` while it is being scored,
422 ``{"status": "failed"}`` when it could not be scored, and 404 when the interview is unknown
(including right after the gateway published it, until fusion has seen its first message).
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated
# dependencies as objects, and they are made inside create_router.

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse

from poise_common.api_auth import requires
from poise_common.auth import KeyStore, Principal
from poise_common.settings import PoiseSettings
from poise_fusion.events import EventHub
from poise_common.paging import BadCursor, decode_cursor, next_cursor
from poise_fusion.store import FusionStore

_RESPONSES = {
    202: {"description": "Still being scored: `{\"status\": \"processing\"}`."},
    404: {"description": "No such interview: `{\"error\": {\"code\": \"not_found\", ...}}`."},
    422: {"description": "The interview could not be scored: `{\"status\": \"failed\"}`."},
}


def create_router(
    store: FusionStore, settings: PoiseSettings, keys: KeyStore, events: EventHub | None = None
) -> APIRouter:
    """The scorecard routes on ``store``; the caller's API key (scope scores:read) decides the tenant."""
    reader = requires(keys, "scores:read")

    def current_tenant(principal: Annotated[Principal, Depends(reader)]) -> str:
        return principal.tenant

    Tenant = Annotated[str, Depends(current_tenant)]
    InterviewId = Annotated[str, Path(min_length=1, max_length=64)]
    router = APIRouter(prefix="/v1/interviews", tags=["scorecards"])

    if events is not None:
        events_router = APIRouter(prefix="/v1", tags=["events"])

        @events_router.get("/events", response_class=StreamingResponse)
        async def score_events(tenant: Tenant) -> StreamingResponse:
            """Server-sent events: answer.scored, interview.scored, interview.failed for the caller's tenant."""
            return StreamingResponse(
                events.stream(tenant), media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )


    @router.get("")
    async def list_interviews(
        tenant: Tenant,
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
        items = await asyncio.to_thread(
            store.list_interviews, tenant, status=status, role=role, limit=limit, after=after
        )
        return JSONResponse({"items": items, "next_cursor": next_cursor(items, limit)})

    @router.get("/{interview_id}/scorecard", responses=_RESPONSES)
    async def get_scorecard(interview_id: InterviewId, tenant: Tenant) -> JSONResponse:
        """The interview's scorecard, or where its scoring stands."""
        found = await asyncio.to_thread(store.interview_status, interview_id)
        # Another tenant's interview does not exist for this caller.
        if found is None or found[0] != tenant:
            return JSONResponse({"error": {"code": "not_found", "message": "no such interview"}}, status_code=404)
        status = found[1]
        if status == "failed":
            return JSONResponse({"status": "failed"}, status_code=422)
        if status == "scored":
            document = await asyncio.to_thread(store.reviewed_scorecard, interview_id)
            if document is not None:
                return JSONResponse(document)
        return JSONResponse({"status": "processing"}, status_code=202)

    api = APIRouter()
    api.include_router(router)
    if events is not None:
        api.include_router(events_router)
    return api
