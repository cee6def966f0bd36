"""The candidate's side of an interview: a signed invitation link, the page, and its upload routes.

The link is ``{public_base_url}/candidate/{interview_id}?t=<token>``. The token is the only
credential a candidate has: ``<expiry>.<tenant>.<signature>``, the signature being HMAC-SHA256
with the server's invitation secret over the interview id, the tenant and the expiry (Unix
seconds). It names no person. A wrong, tampered or expired token is refused with 403 before
anything is looked up, so a refusal never tells whether an interview exists.

Routes (no API key): ``GET /candidate/{id}`` (the page), ``GET /candidate/api/{id}`` (questions,
answers received, status), ``PUT /candidate/api/{id}/answers/{question_id}`` (the raw video,
through the same :class:`UploadDesk` path, limits and errors as the REST upload) and
``POST /candidate/api/{id}/complete``. The page and its script and style are served from
``static/`` beside this module: nothing is loaded from anywhere else. A caller with an API key
gets an interview's link from ``POST /v1/interviews/{id}/invitation`` (Greenhouse orders get
theirs at send_test).
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated dependencies as objects.

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import logging
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

from poise_common.api_auth import requires
from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_common.messages import Consent
from poise_common.secret_files import kept_secret as keep_secret_file
from poise_common.settings import PoiseSettings
from poise_gateway.api import AnswerAccepted, ApiError, ErrorRoute, Processing, UploadDesk, declared_length

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
SECRET_FILE = "invitation.secret"
# Bumped if the signed text ever changes, so old links fail cleanly instead of verifying wrongly.
_SIGNED_PREFIX = b"poise-invitation/v1\n"
_ASSETS = {"candidate.js": "text/javascript", "candidate.css": "text/css", "favicon.svg": "image/svg+xml"}
# The page holds its credential in its URL: no caching, no referrer, nothing from other origins.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(self)",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self' blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


# -- the token ------------------------------------------------------------------------------
class InvalidInvitation(Exception):
    """A token that does not open this interview; ``code`` is link_invalid or link_expired."""

    def __init__(self, code: Literal["link_invalid", "link_expired"]) -> None:
        super().__init__(code)
        self.code = code


def b64url(data: bytes) -> str:
    """URL-safe base64 without padding, as tokens carry it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class InvitationSigner:
    """Makes and checks candidates' invitation tokens with one server secret."""

    def __init__(self, secret: bytes, valid_s: float) -> None:
        if len(secret) < 16:
            raise ValueError("the invitation secret must be at least 16 bytes")
        self._secret = secret
        self.valid_s = valid_s

    @classmethod
    def from_settings(cls, settings: PoiseSettings) -> "InvitationSigner":
        """With the configured secret, or the one kept under POISE_HOME (created on first use)."""
        return cls(invitation_secret(settings), settings.invitation_valid_days * 86400)

    def _signature(self, interview_id: str, tenant: str, expires: int) -> str:
        signed = _SIGNED_PREFIX + f"{interview_id}\n{tenant}\n{expires}".encode()
        return b64url(hmac.new(self._secret, signed, hashlib.sha256).digest())

    def token(self, interview_id: str, tenant: str, *, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.valid_s)
        return f"{expires}.{b64url(tenant.encode())}.{self._signature(interview_id, tenant, expires)}"

    def link(self, base_url: str, interview_id: str, tenant: str) -> str:
        return candidate_url(base_url, interview_id, self.token(interview_id, tenant))

    @staticmethod
    def expiry_of(token: str) -> int:
        """When a token this signer made stops working (Unix seconds)."""
        return int(token.split(".", 1)[0])

    def tenant_of(self, interview_id: str, token: str, *, now: float | None = None) -> str:
        """The tenant the token was made for; raises :class:`InvalidInvitation`."""
        try:
            expires_text, tenant_text, signature = token.split(".")
            expires, tenant = int(expires_text), unb64url(tenant_text).decode()
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidInvitation("link_invalid") from None
        # The signature first: "expired" is only ever said of a token this server made.
        # Bytes: compare_digest refuses (TypeError) a str with any non-ASCII character the caller sent.
        if not hmac.compare_digest(self._signature(interview_id, tenant, expires).encode(), signature.encode()):
            raise InvalidInvitation("link_invalid")
        if (time.time() if now is None else now) >= expires:
            raise InvalidInvitation("link_expired")
        return tenant


def candidate_url(base_url: str, interview_id: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/candidate/{interview_id}?t={token}"


def kept_secret(home: Path) -> bytes:
    """The invitation secret kept in ``home`` (mode 0600), created once."""
    return keep_secret_file(home / SECRET_FILE)


def invitation_secret(settings: PoiseSettings) -> bytes:
    """The configured invitation secret, or the one kept under POISE_HOME."""
    configured = settings.invitation_secret
    return configured.get_secret_value().encode() if configured else kept_secret(settings.home_dir)


# -- bodies ---------------------------------------------------------------------------------
class CandidateQuestion(BaseModel):
    question_id: str
    text: str
    answered: bool = Field(description="An accepted answer is held for this question.")


class Invitation(BaseModel):
    interview_id: str
    url: str = Field(description="The candidate's link: the page where they record or upload each answer.")
    expires_at: int = Field(description="When the link stops working (Unix seconds).")


class CandidateConsent(BaseModel):
    notice_version: str = Field(max_length=64, description="The notice_version the page was given (GET).")


class ConsentRecorded(BaseModel):
    interview_id: str
    given_at: float = Field(description="Unix time the server recorded the consent.")
    notice_version: str


class CandidateInterview(BaseModel):
    interview_id: str
    role: str
    notice_version: str = Field(description="Version of the notice the page shows; consent names it.")
    consented: bool = Field(description="Whether the candidate's consent to analysis is recorded.")
    status: Literal["open", "publishing", "completed"] = Field(
        description="open: answers can be given or replaced; completed: submitted."
    )
    questions: list[CandidateQuestion]
    max_duration_s: float = Field(description="Longest accepted answer.")
    max_file_bytes: int = Field(description="Largest accepted answer.")


_REFUSALS = {
    403: {"description": "The link is not valid or has expired (code link_invalid or link_expired)."},
}


# -- routes ---------------------------------------------------------------------------------
def create_candidate_router(desk: UploadDesk, signer: InvitationSigner, keys: KeyStore, public_base_url: str,
                            audit: AuditTrail | None = None) -> APIRouter:
    """The candidate page and its API (the invitation token, query ``t``, is the credential), and
    the API-key route that hands out an interview's link. With ``audit``, the candidate's consent,
    answers and submission are recorded (actor ``candidate-link``)."""
    router = APIRouter()
    router.include_router(_candidate_routes(desk, signer, audit))
    router.include_router(_invitation_route(desk, signer, keys, public_base_url))
    return router


def _invitation_route(desk: UploadDesk, signer: InvitationSigner, keys: KeyStore, public_base_url: str) -> APIRouter:
    Writer = Annotated[Principal, Depends(requires(keys, "interviews:write"))]
    router = APIRouter(prefix="/v1/interviews", tags=["interviews"], route_class=ErrorRoute)

    @router.post("/{interview_id}/invitation", responses={404: {"description": "No such interview."}})
    async def invite(interview_id: str, caller: Writer) -> Invitation:
        """A new link for the candidate to answer this interview in the browser (earlier links stay valid)."""
        await asyncio.to_thread(desk.read, interview_id, caller.tenant)  # 404 unless the caller's
        token = signer.token(interview_id, caller.tenant)
        return Invitation(interview_id=interview_id, url=candidate_url(public_base_url, interview_id, token),
                          expires_at=signer.expiry_of(token))

    return router


def _candidate_routes(desk: UploadDesk, signer: InvitationSigner, audit: AuditTrail | None) -> APIRouter:
    async def record(tenant: str, action: str, interview_id: str, **detail) -> None:
        # The link names no person: the candidate acts as "candidate-link".
        await record_access(audit, tenant=tenant, actor="candidate-link", action=action, interview_id=interview_id,
                            detail={"via": "candidate-page", **detail})

    def invited(interview_id: str, t: Annotated[str, Query(max_length=512)] = "") -> str:
        try:
            return signer.tenant_of(interview_id, t)
        except InvalidInvitation as exc:
            raise _refusal(exc.code) from None

    Tenant = Annotated[str, Depends(invited)]
    router = APIRouter(prefix="/candidate", tags=["candidate"], route_class=ErrorRoute, responses=_REFUSALS)

    @router.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in _ASSETS:
            raise ApiError(404, "not_found", "no such file")
        return FileResponse(STATIC / name, media_type=_ASSETS[name], headers={"X-Content-Type-Options": "nosniff"})

    @router.get("/{interview_id}", include_in_schema=False)
    async def page(interview_id: str, t: Annotated[str, Query(max_length=512)] = "") -> HTMLResponse:
        try:
            signer.tenant_of(interview_id, t)
        except InvalidInvitation:
            return HTMLResponse(_static_text("link_invalid.html"), 403, headers=_PAGE_HEADERS)
        return HTMLResponse(_static_text("candidate.html"), headers=_PAGE_HEADERS)

    @router.get("/api/{interview_id}")
    async def interview(interview_id: str, tenant: Tenant) -> CandidateInterview:
        """The interview as the candidate sees it: its questions and which already have an answer."""
        manifest = await asyncio.to_thread(desk.read, interview_id, tenant)  # 404 if missing, as in receive
        return CandidateInterview(
            interview_id=interview_id, role=manifest.role, status=manifest.status,
            notice_version=notice_version(), consented=manifest.consent is not None,
            questions=[
                CandidateQuestion(question_id=q.question_id, text=q.text, answered=q.question_id in manifest.answers)
                for q in manifest.questions
            ],
            max_duration_s=desk.limits.max_duration_s, max_file_bytes=desk.limits.max_file_bytes,
        )

    @router.post("/api/{interview_id}/consent", responses={409: {"description": "Already submitted."}})
    async def consent(interview_id: str, body: CandidateConsent, tenant: Tenant) -> ConsentRecorded:
        """The candidate read the notice and agrees to the analysis (required first where the law says so)."""
        if body.notice_version != notice_version():
            raise ApiError(409, "notice_changed", "the notice has changed since this page was loaded; reload it")
        given = Consent(given_at=time.time(), notice_version=body.notice_version)
        await desk.record_consent(interview_id, tenant, given)
        await record(tenant, "consent.record", interview_id, notice_version=given.notice_version)
        log.info("candidate consent recorded", extra={"interview_id": interview_id})
        return ConsentRecorded(interview_id=interview_id, given_at=given.given_at, notice_version=given.notice_version)

    @router.put("/api/{interview_id}/answers/{question_id}")
    async def upload_answer(interview_id: str, question_id: str, request: Request, tenant: Tenant) -> AnswerAccepted:
        """One answer: the raw request body is the video (a recording or a chosen file)."""
        info = await desk.receive(interview_id, question_id, tenant, request.stream(), declared_length(request))
        await record(tenant, "answer.upload", interview_id, question_id=question_id, bytes=info.size_bytes)
        return AnswerAccepted.of(interview_id, question_id, info)

    @router.post("/api/{interview_id}/complete", status_code=202)
    async def complete(interview_id: str, tenant: Tenant) -> Processing:
        """Submit the interview once every question has an answer."""
        await desk.complete(interview_id, tenant)
        await record(tenant, "interview.complete", interview_id)
        return Processing(interview_id=interview_id)

    return router


@functools.cache
def notice_version() -> str:
    """Names the notice the candidate read: the page that shows it, by content, so an edit of its
    text is a new version without anyone having to remember to bump one."""
    return "candidate-page-" + hashlib.sha256(_static_text("candidate.html").encode()).hexdigest()[:12]


@functools.cache
def _static_text(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _refusal(code: str) -> ApiError:
    if code == "link_expired":
        return ApiError(403, code, "this interview link has expired; ask the recruiter who sent it for a new one")
    return ApiError(403, code, "this interview link is not valid; check that it was copied whole")
