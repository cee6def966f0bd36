"""The reviewers' dashboard: its page and assets at ``/dashboard/`` (fusion and ``poise serve``).

A single page (hash routes: the interview list, a scorecard, the bias audit) in plain ES
modules from ``dashboard_static/``: no build step, nothing loaded from another origin, and a
Content-Security-Policy that allows nothing else. Everything it shows comes from the REST API
with the API key the reviewer signs in with, which the page keeps in the tab's sessionStorage
and sends as ``Authorization``; so the API's scopes and tenant checks decide what anyone sees.
Live updates read ``GET /v1/events`` through fetch streaming (an EventSource cannot send the
header); answers' videos come from the gateway's media routes through short-lived media links
(a video element cannot send it either; poise_gateway.media_api).

The API is reached relative to ``api_base``: by default the path the dashboard is mounted
under (same origin; in a distributed deployment an ingress routes ``/v1/interviews/*/answers/*``
to the gateway and the rest of ``/v1`` and ``/dashboard/`` to fusion).
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated dependencies as objects.

import html
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from poise_common.api_auth import requires
from poise_common.auth import KeyStore, Principal
from poise_fusion.framework import available_frameworks

STATIC = Path(__file__).with_name("dashboard_static")
PAGE = "index.html"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_API_BASE_SLOT = '<meta name="poise-api-base" content="">'


class CompetencyName(BaseModel):
    name: str
    label: str


class Role(BaseModel):
    """A competency profile, for the page's role filter and audit form."""

    name: str
    competencies: list[CompetencyName]


class Session(BaseModel):
    """Who signed in to the dashboard, so the page offers only what the key may do."""

    tenant: str
    key_id: str = Field(description="The API key's id; overrides name it as their reviewer.")
    scopes: list[str]
    may_review: bool = Field(description="The key may override scores (scores:review or admin).")
    is_admin: bool = Field(description="The key may run the bias audit (admin).")
    roles: list[Role] = Field(description="The competency profiles this deployment scores with.")


def page_headers(api_base: str = "") -> dict[str, str]:
    """The page's headers: it loads only its own assets, and talks only to itself and the API."""
    origin = ""
    if urlsplit(api_base).scheme in ("http", "https"):
        parts = urlsplit(api_base)
        origin = f" {parts.scheme}://{parts.netloc}"
    return {
        "Cache-Control": "no-store",
        # Media links carry a token in their URL: never sent on as a referrer.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"media-src 'self'{origin}; connect-src 'self'{origin}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        ),
    }


def create_dashboard_router(keys: KeyStore, frameworks_dir: Path | None = None, api_base: str = "") -> APIRouter:
    """The dashboard's page, assets and ``GET /dashboard/session``; ``frameworks_dir``: the roles'
    frameworks (None: the bundled ones); ``api_base``: where the REST API is (a path prefix or an
    absolute URL); empty: the path the dashboard is served under."""
    Reader = Annotated[Principal, Depends(requires(keys, "scores:read"))]
    roles = [
        Role(name=f.name, competencies=[CompetencyName(name=c.name, label=c.label) for c in f.competencies])
        for _, f in sorted(available_frameworks(frameworks_dir).items())
    ]
    assets = {p.name: _TYPES[p.suffix] for p in STATIC.iterdir() if p.suffix in _TYPES}
    page = (STATIC / PAGE).read_text(encoding="utf-8")
    if _API_BASE_SLOT not in page:
        raise RuntimeError(f"{PAGE} lacks the API base slot {_API_BASE_SLOT!r}")
    page = page.replace(_API_BASE_SLOT, f'<meta name="poise-api-base" content="{html.escape(api_base)}">')
    headers = page_headers(api_base)
    router = APIRouter(prefix="/dashboard", tags=["dashboard"])

    @router.get("", include_in_schema=False)
    async def without_slash() -> RedirectResponse:
        # Relative, so a path prefix in front of the dashboard is kept.
        return RedirectResponse("dashboard/", status_code=308)

    @router.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    @router.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in assets:
            return JSONResponse({"error": {"code": "not_found", "message": "no such file"}}, status_code=404)
        # no-cache: revalidated on each load, so a new version is picked up at once.
        return FileResponse(STATIC / name, media_type=assets[name],
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    @router.get("/session")
    async def session(caller: Reader) -> Session:
        """The signed-in key's tenant and what it may do (any key that may read scores may sign in)."""
        return Session(tenant=caller.tenant, key_id=caller.key_id, scopes=sorted(caller.scopes),
                       may_review=caller.may("scores:review"), is_admin=caller.may("admin"), roles=roles)

    return router
