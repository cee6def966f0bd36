"""``GET /v1/audit-log``: the caller's tenant's audit log entries, oldest first, streamed (scope admin).

Each line is one entry with its ``seq``, ``prev_hash`` and ``hash``, so a recipient can check
each entry's hash; the whole chain (every tenant's entries) is verified with ``poise audit-log verify``.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated dependencies as objects.

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse

from poise_common.api_auth import requires
from poise_common.audit_trail import ACTIONS, AuditTrail, csv_lines, entries, jsonl_lines, parse_time
from poise_common.auth import KeyStore, Principal

_TIME = "ISO-8601 date or date-time (UTC unless it names a zone), or Unix seconds."
_MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def _error(code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=422)


def create_audit_log_router(trail: AuditTrail, keys: KeyStore) -> APIRouter:
    Admin = Annotated[Principal, Depends(requires(keys, "admin"))]
    router = APIRouter(prefix="/v1", tags=["audit log"])

    @router.get("/audit-log", responses={
        200: {"description": "One entry per line.", "content": {"application/x-ndjson": {}, "text/csv": {}}},
        422: {"description": "A bad time or an unknown action."},
    })
    async def audit_log(
        caller: Admin,
        since: Annotated[str | None, Query(max_length=64, description=f"Entries at or after this. {_TIME}")] = None,
        until: Annotated[str | None, Query(max_length=64, description=f"Entries before this. {_TIME}")] = None,
        action: Annotated[str | None, Query(max_length=64, description="Only this action.")] = None,
        fmt: Annotated[str, Query(alias="format", pattern="^(jsonl|csv)$")] = "jsonl",
    ):
        """The caller's tenant's entries, oldest first: who read or changed which interview's data, and when."""
        try:
            start, end = (parse_time(v) if v else None for v in (since, until))
        except ValueError as exc:
            return _error("invalid_time", str(exc))
        if action is not None and action not in ACTIONS:
            return _error("invalid_action", f"unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}")
        records = entries(trail.sessions, tenant=caller.tenant, since=start, until=end, action=action)
        lines = jsonl_lines(records) if fmt == "jsonl" else csv_lines(records)
        # A plain iterator: the response reads each page of the database in a worker thread.
        return StreamingResponse(lines, media_type=_MEDIA_TYPES[fmt])

    return router
