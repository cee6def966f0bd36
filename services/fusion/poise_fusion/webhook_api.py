"""Webhook routes: register, list, delete, and the delivery log with replay (scope admin)."""

# No `from __future__ import annotations`: FastAPI must see the Annotated dependencies as objects.

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from poise_common.api_auth import requires
from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_fusion.webhooks import WebhookError, WebhookStore


class NewWebhook(BaseModel):
    url: str = Field(max_length=2048, description="http(s) URL that receives POSTed events.")
    events: list[str] | None = Field(None, description="Event types; all of them when omitted.")


def create_webhook_router(hooks: WebhookStore, keys: KeyStore, audit: AuditTrail | None = None) -> APIRouter:
    """The tenant's webhooks (scope admin); with ``audit``, a replay (it sends a scorecard again) is recorded."""
    admin = requires(keys, "admin")
    Caller = Annotated[Principal, Depends(admin)]
    Id = Annotated[str, Path(min_length=1, max_length=32)]
    router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

    @router.post("", status_code=201)
    async def register(body: NewWebhook, caller: Caller) -> JSONResponse:
        """Register a URL; the response carries the signing secret, shown this once."""
        try:
            created = await asyncio.to_thread(hooks.register, caller.tenant, body.url, body.events)
        except WebhookError as exc:
            return JSONResponse({"error": {"code": "invalid_webhook", "message": str(exc)}}, status_code=422)
        return JSONResponse(created, status_code=201)

    @router.get("")
    async def list_webhooks(caller: Caller) -> JSONResponse:
        """The tenant's webhooks (without their secrets)."""
        return JSONResponse({"items": await asyncio.to_thread(hooks.list, caller.tenant)})

    @router.delete("/{webhook_id}", status_code=204)
    async def delete_webhook(webhook_id: Id, caller: Caller):
        """Stop sending to a webhook; its delivery log goes with it."""
        if not await asyncio.to_thread(hooks.delete, caller.tenant, webhook_id):
            return JSONResponse({"error": {"code": "not_found", "message": "no such webhook"}}, status_code=404)
        return JSONResponse(None, status_code=204)

    @router.get("/deliveries")
    async def deliveries(caller: Caller) -> JSONResponse:
        """The delivery log, newest first: status, attempts and the last outcome of each."""
        return JSONResponse({"items": await asyncio.to_thread(hooks.deliveries, caller.tenant)})

    @router.post("/deliveries/{delivery_id}/replay", status_code=202)
    async def replay(delivery_id: Id, caller: Caller) -> JSONResponse:
        """Send a delivery again (e.g. after the receiver was fixed)."""
        if not await asyncio.to_thread(hooks.replay, caller.tenant, delivery_id):
            return JSONResponse({"error": {"code": "not_found", "message": "no such delivery"}}, status_code=404)
        await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="webhook.replay",
                            detail={"delivery_id": delivery_id})
        return JSONResponse({"delivery_id": delivery_id, "status": "pending"}, status_code=202)

    return router
