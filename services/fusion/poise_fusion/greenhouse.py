"""Greenhouse Assessment Partner API: Greenhouse orders interviews here and reads their results.

Greenhouse calls four routes under ``/ats/greenhouse/`` with HTTP Basic auth, the customer's
Poise API key as the username and an empty password:

- ``GET list_tests``: one test per competency framework (the role).
- ``POST send_test``: opens an interview of that role with :data:`DEFAULT_QUESTIONS` and answers
  its id (``partner_interview_id``). The partner invites the candidate itself: the signed
  invitation link (``invitation_link``, the gateway's candidate page) is kept on the row and,
  when the candidate has an email address and email is configured, the invitation is queued
  for :class:`poise_fusion.invitations.InvitationMailer` (status ``pending``, else ``not_sent``).
  A malformed email address, or a callback ``url`` that is not public (see
  :mod:`poise_common.outbound_urls`), is a 422 and nothing is created; when the order cannot be
  kept, the interview just opened is removed again (``discard_interview``).
- ``GET test_status``: ``complete`` once fusion has scored it, with the mean competency score,
  the per-competency scores in the flat ``metadata`` (``outcome`` says when every competency
  lacked evidence), and the interview's page in the reviewers' dashboard as the profile URL;
  also ``complete`` once it has failed, with no score and ``outcome``/``reason`` in ``metadata``
  ("complete" is the only status Greenhouse takes as final).
- ``POST response_error``: Greenhouse reporting a failed call of ours; only the call's name and
  the number of errors are logged.

When the interview is scored or has failed, :class:`GreenhouseNotifier` sends ``PATCH <url>``
(no body) to the URL send_test gave, retried with exponential backoff until Greenhouse answers
2xx; Greenhouse then calls test_status. A URL whose host resolves to a non-public address when
the PATCH is due is not called: the callback is marked ``failed``. Candidates' names and emails
never reach a log line.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated dependencies as objects.

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_common.bus import Bus
from poise_common.db.models import GreenhouseTest
from poise_common.messages import Envelope, ScoreEvent
from poise_common.outbound_urls import UnsafeUrl, check_url, parse_url
from poise_fusion.api import failure_error
from poise_fusion.framework import available_frameworks
from poise_fusion.outbox import OutboxSender
from poise_fusion.store import FusionStore

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# Greenhouse orders a test by name only, so each role needs questions of its own. These three
# behavioural questions suit every bundled framework (their competencies are soft skills read
# from what is said); a role listed in ROLE_QUESTIONS gets its own list instead.
DEFAULT_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("q1", "Tell us about a time you worked with others to reach a difficult goal. What was your part?"),
    ("q2", "Describe a situation where you had to explain something complicated to someone. How did you go about it?"),
    ("q3", "Tell us about a mistake you made at work or in your studies, and what you did next."),
)
ROLE_QUESTIONS: dict[str, tuple[tuple[str, str], ...]] = {}
# Backoff of the callback: base * 2**attempts, never longer than this, never given up.
MAX_BACKOFF_S = 600.0

# (role, questions [{question_id, text}], tenant) -> interview id; in `poise serve`, UploadDesk.create.
CreateInterview = Callable[[str, list[dict], str], Awaitable[str]]
# (interview_id) -> removes what CreateInterview made; in `poise serve`, UploadDesk.erase.
DiscardInterview = Callable[[str], Awaitable[object]]
# (interview_id, tenant) -> the candidate's signed link; in `poise serve`, InvitationSigner.link.
InvitationLink = Callable[[str, str], str]
# The events after which Greenhouse is owed its PATCH: the test is over either way.
FINAL_EVENTS = ("interview.scored", "interview.failed")
# An address the invitation email can carry: a dot-atom local part (RFC 5322 atext) and a domain
# of at least two DNS labels. Stricter than the RFC (no quoted local parts, no address literals),
# as no candidate's mailbox needs those and the email package fails on some malformed ones.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?")


def is_email_address(text: str) -> bool:
    """One plain address (``name@example.com``) that an email header can carry."""
    local, _, domain = text.rpartition("@")
    return bool(_EMAIL.fullmatch(text)) and len(local) <= 64 and len(domain) <= 253


def questions_for(role: str) -> list[dict]:
    return [{"question_id": qid, "text": text} for qid, text in ROLE_QUESTIONS.get(role, DEFAULT_QUESTIONS)]


# -- bodies ---------------------------------------------------------------------------------
class ListedTest(BaseModel):
    partner_test_id: str
    partner_test_name: str


class Candidate(BaseModel):
    # Greenhouse only ever adds fields, so unknown ones are accepted (and not kept).
    model_config = ConfigDict(extra="allow")

    first_name: str | None = Field(None, max_length=256)
    last_name: str | None = Field(None, max_length=256)
    email: str | None = Field(None, max_length=320, description="Where the invitation is sent: name@domain.example.")
    phone_number: str | None = Field(None, max_length=64)
    resume_url: str | None = Field(None, max_length=2048)
    greenhouse_profile_url: str | None = Field(None, max_length=2048)

    @field_validator("email")
    @classmethod
    def _email_address(cls, email: str | None) -> str | None:
        if email is not None and not is_email_address(email):
            raise ValueError("email must be one address, like name@example.com")
        return email


class SendTest(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "partner_test_id": "generic",
        "candidate": {"first_name": "Sam", "last_name": "Doe", "email": "sam@example.com", "phone_number": None,
                      "resume_url": None, "greenhouse_profile_url": None},
        "url": "https://app.greenhouse.io/v1/partner_callback/abc123",
    }]})

    partner_test_id: str = Field(max_length=128, description="The role, as list_tests named it.",
                                 examples=["generic"])
    candidate: Candidate
    url: str = Field(max_length=2048, description="Where to send PATCH (no body) once the test is complete.",
                     examples=["https://app.greenhouse.io/v1/partner_callback/abc123"])

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parse_url(url)
        except UnsafeUrl as exc:
            raise ValueError(f"url is refused: {exc}") from None
        return url


class SentTest(BaseModel):
    partner_interview_id: str


class TestStatus(BaseModel):
    partner_status: str = Field(
        description='"complete" once scored or failed (the only final status Greenhouse knows), else "in_progress".'
    )
    partner_profile_url: str | None = Field(
        description="The interview's page in the reviewers' dashboard (the scorecard and its evidence, after "
        "signing in with a Poise key); null until complete."
    )
    partner_score: float | None = Field(
        description="Mean of the scored competencies, 0-100; null until complete, when it failed, or when no "
        "competency had enough evidence."
    )
    metadata: dict[str, str | int | float | bool | None] = Field(
        description="Flat. outcome: scored, insufficient_evidence (no competency could be scored) or not_scored "
        "(it failed; reason: consent_required or not_scorable). Once scored also each competency's final "
        "score (a reviewer's override, else the model's; null when evidence was insufficient), model_version, "
        "policy, reviewed."
    )


class ResponseError(BaseModel):
    model_config = ConfigDict(extra="allow")

    api_call: str | None = Field(None, max_length=128)
    errors: list[Any] = Field(default_factory=list)
    partner_test_id: str | None = None
    partner_test_name: str | None = None
    partner_interview_id: str | None = None
    candidate_email: str | None = None


class Empty(BaseModel):
    pass


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


_ERRORS = {
    401: {"description": "No valid API key as the Basic username."},
    403: {"description": "The key lacks the scope this call needs."},
}


# -- storage --------------------------------------------------------------------------------
class GreenhouseStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def add(self, interview_id: str, tenant: str, role: str, candidate: Candidate, callback_url: str,
            invitation_url: str, *, email_invitation: bool = False) -> str:
        """Keep the order; returns the invitation's status (pending when an email is to be sent)."""
        name = " ".join(p for p in (candidate.first_name, candidate.last_name) if p) or None
        invitation = "pending" if email_invitation and candidate.email else "not_sent"
        now = time.time()
        with self.sessions.begin() as session:
            session.add(GreenhouseTest(
                id=interview_id, tenant=tenant, partner_test_id=role, candidate_email=candidate.email,
                candidate_name=name, invitation_url=invitation_url, callback_url=callback_url,
                invitation_status=invitation, invitation_next_attempt_at=now if invitation == "pending" else None,
            ))
        return invitation

    def tenant_of(self, interview_id: str) -> str | None:
        with self.sessions() as session:
            row = session.get(GreenhouseTest, interview_id)
            return row.tenant if row is not None else None

    def mark_complete(self, interview_id: str, tenant: str) -> bool:
        """Schedule the callback of a Greenhouse interview just scored or failed; False if not one (or a replay)."""
        now = time.time()
        with self.sessions.begin() as session:
            row = session.get(GreenhouseTest, interview_id)
            if row is None or row.tenant != tenant or row.status == "complete":
                return False
            row.status, row.completed_at = "complete", now
            row.callback_status, row.next_attempt_at = "pending", now
            return True

    def due(self, now: float, limit: int = 50) -> list[tuple[str, str, int]]:
        with self.sessions() as session:
            rows = session.execute(
                select(GreenhouseTest.id, GreenhouseTest.callback_url, GreenhouseTest.callback_attempts)
                .where(GreenhouseTest.callback_status == "pending", GreenhouseTest.next_attempt_at <= now)
                .order_by(GreenhouseTest.next_attempt_at).limit(limit)
            ).all()
            return [tuple(r) for r in rows]

    def record(self, interview_id: str, *, ok: bool, error: str | None, retry_at: float | None) -> None:
        """One callback attempt's outcome; ``retry_at`` None gives up (``failed``)."""
        with self.sessions.begin() as session:
            row = session.get(GreenhouseTest, interview_id)
            if row is None:
                return
            row.callback_attempts += 1
            row.last_error = error
            if ok:
                row.callback_status, row.delivered_at, row.next_attempt_at = "delivered", time.time(), None
            elif retry_at is None:
                row.callback_status, row.next_attempt_at = "failed", None
            else:
                row.next_attempt_at = retry_at


# -- auth -----------------------------------------------------------------------------------
_basic = HTTPBasic(auto_error=False, description="The Poise API key as the username, an empty password.")


def _unauthorised() -> HTTPException:
    return HTTPException(
        401, detail={"code": "unauthenticated", "message": "a valid API key is required as the Basic username"},
        headers={"WWW-Authenticate": 'Basic realm="poise"'},
    )


def basic_requires(keys: KeyStore, scope: str | None) -> Callable:
    """A dependency returning the caller's Principal: 401 without a valid key, 403 without ``scope``.

    The key is the Basic username; the password must be empty (Greenhouse's convention).
    """

    async def principal(credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> Principal:
        token = credentials.username if credentials is not None and not credentials.password else None
        found = await asyncio.to_thread(keys.verify, token) if token else None
        if found is None:
            raise _unauthorised()
        if scope is not None and not found.may(scope):
            raise HTTPException(403, detail={"code": "forbidden", "message": f"this key lacks the {scope!r} scope"})
        return found

    return principal


# -- routes ---------------------------------------------------------------------------------
def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def profile_url(base: str, interview_id: str) -> str:
    """The interview's page in the reviewers' dashboard (docs/dashboard.md, route ``#/interviews/{id}``).

    A recruiter follows it from Greenhouse in a browser: the dashboard asks for their Poise key,
    where the REST scorecard would only answer 401 to a browser.
    """
    return f"{base}/dashboard/#/interviews/{quote(interview_id, safe='')}"


def status_of(document: dict, profile_url: str) -> TestStatus:
    """A served scorecard (overrides applied) as Greenhouse shows it: one number and flat metadata;
    a reviewer's score stands in for the model's."""
    scores = {c["name"]: c["final_score"] for c in document.get("competencies", [])}
    score = _mean([s for s in scores.values() if isinstance(s, (int, float))])
    metadata: dict[str, Any] = dict(scores)
    # Without it a null score would read as "not scored yet" rather than "nothing to score on".
    metadata["outcome"] = "scored" if score is not None else "insufficient_evidence"
    metadata["model_version"] = document.get("model_version")
    metadata["policy"] = document.get("policy")
    metadata["reviewed"] = document.get("reviewed", False)
    return TestStatus(partner_status="complete", partner_profile_url=profile_url, partner_score=score,
                      metadata=metadata)


def failed_status(reason: str, profile_url: str) -> TestStatus:
    """A test whose interview could not be scored: final for Greenhouse, with why as a code."""
    return TestStatus(partner_status="complete", partner_profile_url=profile_url, partner_score=None,
                      metadata={"outcome": "not_scored", "reason": reason})


def in_progress() -> TestStatus:
    return TestStatus(partner_status="in_progress", partner_profile_url=None, partner_score=None, metadata={})


def _invalid(field: str, value: Any, message: str) -> RequestValidationError:
    # A validation error like any other, so every 422 has the documented body.
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "input": value, "msg": message}])


def create_greenhouse_router(
    tests: GreenhouseStore,
    fusion: FusionStore,
    keys: KeyStore,
    create_interview: CreateInterview,
    *,
    frameworks_dir: Path | None = None,
    public_base_url: str = DEFAULT_BASE_URL,
    invitation_link: InvitationLink,
    discard_interview: DiscardInterview,
    email_invitations: bool = False,
    allow_private_targets: bool = False,
    audit: AuditTrail | None = None,
) -> APIRouter:
    """The partner routes; ``create_interview(role, questions, tenant)`` opens an interview,
    ``discard_interview(interview_id)`` removes it again when its order cannot be kept, and
    ``invitation_link(interview_id, tenant)`` makes its candidate link. With ``email_invitations``
    (an SMTP server is configured) a candidate with an email address is queued an invitation.
    ``allow_private_targets`` accepts callback URLs on non-public addresses. With ``audit``, each
    order and each result read is recorded."""
    base = public_base_url.rstrip("/")

    async def check_callback(url: str) -> None:
        try:
            await asyncio.to_thread(check_url, url, allow_private=allow_private_targets)
        except UnsafeUrl as exc:
            raise _invalid("url", url, f"url is refused: {exc}") from None

    async def open_order(body: SendTest, role: str, tenant: str) -> tuple[str, str]:
        """(interview id, invitation status): the interview and its order, both or neither."""
        interview_id = await create_interview(role, questions_for(role), tenant)
        try:
            invitation = await asyncio.to_thread(
                tests.add, interview_id, tenant, role, body.candidate, body.url,
                invitation_link(interview_id, tenant), email_invitation=email_invitations,
            )
        except Exception:
            # An interview without its order would wait for answers nobody is invited to give.
            await discard_interview(interview_id)
            raise
        return interview_id, invitation

    Anyone = Annotated[Principal, Depends(basic_requires(keys, None))]
    Writer = Annotated[Principal, Depends(basic_requires(keys, "interviews:write"))]
    Reader = Annotated[Principal, Depends(basic_requires(keys, "scores:read"))]
    router = APIRouter(prefix="/ats/greenhouse", tags=["greenhouse"], responses=_ERRORS)

    @router.get("/list_tests")
    async def list_tests(caller: Anyone) -> list[ListedTest]:
        """The tests Greenhouse can order: one per competency framework."""
        frameworks = await asyncio.to_thread(available_frameworks, frameworks_dir)
        return [
            ListedTest(partner_test_id=name, partner_test_name=_label(name, fw.description))
            for name, fw in sorted(frameworks.items())
        ]

    @router.post("/send_test")
    async def send_test(body: SendTest, caller: Writer) -> SentTest:
        """Open an interview of the ordered role for the candidate; the partner invites them."""
        frameworks = await asyncio.to_thread(available_frameworks, frameworks_dir)
        role = body.partner_test_id
        if role not in frameworks:
            raise _invalid("partner_test_id", role, f"unknown test; list_tests names {', '.join(sorted(frameworks))}")
        await check_callback(body.url)
        interview_id, invitation = await open_order(body, role, caller.tenant)
        log.info("greenhouse invitation", extra={"interview_id": interview_id, "role": role, "status": invitation})
        await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="interview.create",
                            interview_id=interview_id, detail={"via": "greenhouse", "role": role})
        return SentTest(partner_interview_id=interview_id)

    @router.get("/test_status", responses={404: {"description": "No such test for this key's tenant."}})
    async def test_status(
        caller: Reader, partner_interview_id: Annotated[str, Query(min_length=1, max_length=64)]
    ) -> TestStatus:
        """Where the test stands; once complete, the score and per-competency metadata."""
        interview_id = partner_interview_id
        # Another tenant's test does not exist for this caller.
        if await asyncio.to_thread(tests.tenant_of, interview_id) != caller.tenant:
            return _error(404, "not_found", "no such partner_interview_id")
        found = await asyncio.to_thread(fusion.interview_status, interview_id)
        if found is None or found[0] != caller.tenant:
            return in_progress()
        if found[1] == "failed":
            # The code the scorecard API gives, not the stored text: Greenhouse shows metadata to
            # recruiters, and a code is what they act on (the same one wherever they look).
            reason = failure_error(await asyncio.to_thread(fusion.failure_reason, interview_id))["code"]
            return failed_status(reason, profile_url(base, interview_id))
        if found[1] == "scored":
            document = await asyncio.to_thread(fusion.reviewed_scorecard, interview_id)
            if document is not None:
                await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="scorecard.read",
                                    interview_id=interview_id, detail={"via": "greenhouse"})
                return status_of(document, profile_url(base, interview_id))
        return in_progress()

    @router.post("/response_error")
    async def response_error(body: ResponseError, caller: Anyone) -> Empty:
        """Greenhouse reports that one of our answers failed it; logged (call and count only)."""
        log.warning("greenhouse reported an error", extra={
            "api_call": (body.api_call or "")[:64], "errors": len(body.errors), "tenant": caller.tenant,
        })
        return Empty()

    return router


def role_title(name: str) -> str:
    """A framework's name as people read it: ``sales-development-rep`` -> ``Sales development rep``."""
    return name.replace("-", " ").replace("_", " ").capitalize()


def _label(name: str, description: str) -> str:
    title = role_title(name)
    return f"{title}: {description}" if description else title


# -- the callback -------------------------------------------------------------------------------
class GreenhouseNotifier(OutboxSender):
    """Marks Greenhouse tests complete when scored or failed and PATCHes their URL until Greenhouse
    accepts; a URL refused when the PATCH is due (a non-public address) is not called again."""

    group = "greenhouse"

    def __init__(self, bus: Bus, store: GreenhouseStore, *, backoff_s: float = 5.0, max_backoff_s: float = MAX_BACKOFF_S,
                 poll_s: float = 0.5, timeout_s: float = 10.0, allow_private: bool = False) -> None:
        super().__init__(bus, timeout_s=timeout_s, poll_s=poll_s, allow_private=allow_private)
        self.store = store
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s

    async def on_event(self, env: Envelope) -> None:
        if isinstance(env.payload, ScoreEvent) and env.payload.type in FINAL_EVENTS:
            if await asyncio.to_thread(self.store.mark_complete, env.interview_id, env.tenant):
                log.info("greenhouse test complete", extra={"interview_id": env.interview_id,
                                                             "event": env.payload.type})

    def due(self, now: float) -> list[tuple]:
        return self.store.due(now)

    async def send(self, interview_id: str, url: str, attempts: int) -> None:
        code, error, retry = None, None, True
        try:
            response = await self.client.patch(url)
            code = response.status_code
            ok = 200 <= code < 300
            if not ok:
                error = f"HTTP {code}"
        except httpx.HTTPError as exc:
            ok, error = False, type(exc).__name__
        except UnsafeUrl as exc:  # refused before connecting: a retry would be refused again
            ok, error, retry = False, f"refused: {exc}", False
        retry_at = time.time() + self.backoff(attempts + 1) if retry else None
        log.info("greenhouse callback", extra={"interview_id": interview_id, "ok": ok, "status_code": code,
                                               "attempt": attempts + 1})
        await asyncio.to_thread(self.store.record, interview_id, ok=ok, error=error, retry_at=retry_at)
