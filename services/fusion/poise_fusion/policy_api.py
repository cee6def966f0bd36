"""The tenant's settings: its policy profile and candidate notice (scope admin, own tenant only)."""

# No `from __future__ import annotations`: FastAPI must see the Annotated dependencies as objects.

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from poise_common.api_auth import requires
from poise_common.auth import KeyStore, Principal
from poise_fusion.policy import KEEP, PROFILE_NAMES, Notice, PolicyError, TenantPolicyStore


class TenantSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Literal[PROFILE_NAMES] = Field(description="The policy profile: default, eu, us-nyc or us-il.")
    notice: Notice | None = Field(
        None, description="The candidate notice (us-nyc needs its first three fields). Omitted: the stored "
        "notice stays; null: it is removed.",
    )


def create_tenant_settings_router(policies: TenantPolicyStore, keys: KeyStore) -> APIRouter:
    Caller = Annotated[Principal, Depends(requires(keys, "admin"))]
    router = APIRouter(prefix="/v1/tenant", tags=["tenant"])

    @router.get("/settings")
    async def get_settings(caller: Caller) -> JSONResponse:
        """The caller's tenant's policy profile and notice (stored false: the deployment's default applies)."""
        return JSONResponse((await asyncio.to_thread(policies.get, caller.tenant)).view())

    @router.put("/settings")
    async def put_settings(body: TenantSettingsIn, caller: Caller) -> JSONResponse:
        """Set the caller's tenant's policy profile (and notice); scoring follows it within seconds."""
        notice = body.notice if "notice" in body.model_fields_set else KEEP
        try:
            stored = await asyncio.to_thread(policies.set, caller.tenant, body.policy, notice)
        except PolicyError as exc:
            return JSONResponse({"error": {"code": "invalid_policy", "message": str(exc)}}, status_code=422)
        return JSONResponse(stored.view())

    return router
