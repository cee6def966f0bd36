"""Candidate notices served by the API: ``GET /v1/notices/{profile}`` for ``us-il`` and ``us-nyc``.

The text (Markdown) is made from the role's competency framework: what is assessed, the
behaviours measured and the kinds of data behind them, as the policy profile lets them feed
scores. The Illinois notice explains how the analysis works and the general characteristics it
uses (820 ILCS 42); the New York City one says what is assessed, the data, its sources and
retention, how to ask for an alternative process and where the bias audit summary is (Local
Law 144), from the tenant's notice settings.

Candidates must be able to read it, so the route needs no API key: without one it serves the
generic text, which leaves the employer's details to the employer. With a key (any scope) the
caller's tenant's notice settings are filled in and returned as ``tenant_notice``. ``version``
is a hash of the text: any change of wording or of the tenant's details is a new version.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated parameters as objects.

import asyncio
import hashlib
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from poise_common.api_auth import bearer_token
from poise_common.auth import KeyStore
from poise_fusion.framework import Framework, FrameworkError, get_framework
from poise_fusion.greenhouse import role_title
from poise_fusion.policy import DATA_KINDS, DEFAULT_DATA_SOURCES, PolicyProfile, TenantPolicyStore, get_profile

NOTICE_PROFILES = ("us-il", "us-nyc")
ROLE_PATTERN = r"^[a-z0-9-]{1,64}$"

_HOW_IT_WORKS = """## How the analysis works

You record a video answer to each interview question. Software then:

1. writes down what you said (speech recognition) and measures observable behaviour in the
   recording, as listed below;
2. turns each measurement into a value between 0 and 1 with a fixed rule and adds them up,
   weighted, into a score from 0 to 100 for each competency; every score lists the
   measurements behind it and points to the moments of your answers they come from;
3. hands the scores to a person at the employer, who reviews them and may change a score,
   giving a reason. The scores are a recommendation to that person, never a decision by
   themselves.

The measurements describe behaviour, not feelings: the software does not recognise emotions,
judge personality, or identify you by your face, and it never uses your sex, ethnicity or age.
"""


def _behaviours(framework: Framework, profile: PolicyProfile) -> str:
    lines = []
    for competency in framework.competencies:
        measured = [b.name for b in competency.behaviours if any(profile.feeds(f) for f in b.features)]
        if measured:
            lines.append(f"- **{competency.label}**: {'; '.join(measured)}")
    return "\n".join(lines)


def _data_kinds(framework: Framework, profile: PolicyProfile) -> str:
    used = {f.modality for c in framework.competencies for f in c.features if profile.feeds(f)}
    return "\n".join(f"- {DATA_KINDS[kind]}" for kind in DATA_KINDS if kind in used)


def illinois_text(framework: Framework) -> str:
    profile = get_profile("us-il")
    return f"""# Notice: AI analysis of your video interview

This notice is given under the Illinois Artificial Intelligence Video Interview Act (820 ILCS 42)
before your interview. Role: **{role_title(framework.name)}**.

{_HOW_IT_WORKS}
## The general characteristics it uses

For each competency, the behaviours it measures:

{_behaviours(framework, profile)}

The kinds of data these come from:

{_data_kinds(framework, profile)}

## Your consent

Your answers are not analysed unless you consent first. You may decline and ask the employer to
consider you in another way.

## Who sees your video

Your video is shared only with people whose expertise or technology is needed to evaluate you.

## Deleting your video

You may ask the employer to delete your video. It is then deleted, with every copy, within 30
days of your request.
"""


def new_york_text(framework: Framework, notice: dict | None) -> str:
    profile, notice = get_profile("us-nyc"), notice or {}
    retention = notice.get("retention") or "The employer decides how long the data is kept; ask them (below)."
    contact = notice.get("alternative_process_contact") or "the employer who invited you to this interview"
    audit = notice.get("audit_summary_url") or "the employer's website"
    return f"""# Notice: automated employment decision tool

This notice is given under New York City Local Law 144 at least 10 business days before the tool
is used. An automated employment decision tool will be used in assessing your application for
the role **{role_title(framework.name)}**.

{_HOW_IT_WORKS}
## What is assessed

The job qualifications and characteristics the tool assesses, with the behaviours it measures:

{_behaviours(framework, profile)}

## The data used, and where it comes from

{_data_kinds(framework, profile)}

Source: {notice.get("data_sources") or DEFAULT_DATA_SOURCES}.

## How long the data is kept

{retention}

## An alternative selection process or an accommodation

You may ask for an alternative selection process or a reasonable accommodation: {contact}.

## Bias audit

The summary of the latest independent bias audit of this tool is published at {audit}.
"""


def text_version(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def notice_document(profile: str, framework: Framework, notice: dict | None = None) -> dict:
    """What the route answers: the profile's text for ``framework`` (us-nyc: with the tenant's ``notice``)."""
    text = illinois_text(framework) if profile == "us-il" else new_york_text(framework, notice)
    return {"profile": profile, "role": framework.name, "version": text_version(text), "format": "markdown",
            "text": text, "tenant_notice": notice if profile == "us-nyc" else None}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_notice_router(policies: TenantPolicyStore, keys: KeyStore, *, frameworks_dir: Path | None,
                         default_role: str) -> APIRouter:
    """``GET /v1/notices/{profile}``: public generic text; with an API key, the caller's tenant's notice."""
    router = APIRouter(prefix="/v1/notices", tags=["notices"])

    @router.get("/{profile}", responses={
        401: {"description": "An API key was given and is not valid."},
        404: {"description": "No such role."},
    })
    async def notice(
        profile: Literal[NOTICE_PROFILES],
        request: Request,
        role: Annotated[str | None, Query(pattern=ROLE_PATTERN, description="The role; unset: the default.")] = None,
    ) -> JSONResponse:
        """The candidate notice of a policy profile (Markdown); no key needed. A key adds its tenant's details."""
        token = bearer_token(request)
        principal = await asyncio.to_thread(keys.verify, token) if token else None
        if token and principal is None:
            # A wrong key is refused rather than quietly answered with the generic text.
            raise HTTPException(401, detail={"code": "unauthenticated", "message": "the API key is not valid"},
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            framework = await asyncio.to_thread(get_framework, role or default_role, frameworks_dir)
        except FrameworkError as exc:
            return _error(404, "unknown_role", str(exc))
        stored = None
        if principal is not None and profile == "us-nyc":
            stored = (await asyncio.to_thread(policies.get, principal.tenant)).notice
        return JSONResponse(notice_document(profile, framework, stored))

    return router
