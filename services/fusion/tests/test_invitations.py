"""Invitation emails for Greenhouse orders, sent to a real SMTP server on 127.0.0.1 (aiosmtpd)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from email import message_from_bytes, policy

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.db.models import GreenhouseTest
from poise_common.messages import Envelope, ScoreEvent
from poise_common.settings import SmtpSettings
from poise_devstack.ports import free_port
from poise_fusion.greenhouse import GreenhouseStore, create_greenhouse_router
from poise_fusion.invitations import InvitationMailer, InvitationStore, smtp_address
from poise_fusion.store import FusionStore

EMAIL = "sam.doe@example.com"
ORDER = {
    "partner_test_id": "sales-development-rep",
    "candidate": {"first_name": "Samantha", "last_name": "Doe", "email": EMAIL, "phone_number": "+1 555 0100",
                  "resume_url": None, "greenhouse_profile_url": None},
    "url": "https://app.greenhouse.io/v1/partner_callback/abc123",
}


class Mailbox:
    """aiosmtpd on 127.0.0.1 answering ``reply`` to the first ``failures`` messages, then accepting."""

    def __init__(self, failures: int = 0, reply: str = "451 4.3.0 Try again later") -> None:
        self.failures, self.reply = failures, reply
        self.attempts = 0
        self.received: list[tuple[str, list[str], bytes]] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.attempts += 1
        if self.attempts <= self.failures:
            return self.reply
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.controller.port}"

    def __enter__(self) -> "Mailbox":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def link_of(interview_id: str, tenant: str) -> str:
    return f"https://poise.example.com/candidate/{interview_id}?t=signed-for-{tenant}"


async def send_order(sessions, *, email_invitations: bool, candidate: dict | None = None) -> httpx.Response:
    """POST send_test through the real partner routes."""

    async def open_interview(role: str, questions: list[dict], tenant: str) -> str:
        return uuid.uuid4().hex  # no folder: these tests look at the order's row only

    async def discard_interview(interview_id: str) -> None:
        pass

    keys = KeyStore(sessions)
    app = FastAPI()
    app.include_router(create_greenhouse_router(
        GreenhouseStore(sessions), FusionStore(sessions), keys, open_interview,
        invitation_link=link_of, discard_interview=discard_interview, email_invitations=email_invitations,
    ))
    basic = base64.b64encode(f"{keys.create('acme', ['interviews:write'])}:".encode()).decode()
    body = {**ORDER, "candidate": candidate or ORDER["candidate"]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://poise") as client:
        return await client.post("/ats/greenhouse/send_test", json=body, headers={"Authorization": f"Basic {basic}"})


async def order(sessions, *, email_invitations: bool, candidate: dict | None = None) -> str:
    """An order taken; the new interview's id."""
    response = await send_order(sessions, email_invitations=email_invitations, candidate=candidate)
    assert response.status_code == 200, response.text
    return response.json()["partner_interview_id"]


def row(sessions, interview_id: str) -> GreenhouseTest:
    with sessions() as session:
        return session.get(GreenhouseTest, interview_id)


async def run_mailer(sessions, smtp: SmtpSettings, until, timeout_s: float = 30) -> None:
    bus = MemoryBus()
    await bus.start()
    mailer = InvitationMailer(bus, InvitationStore(sessions), smtp, poll_s=0.05)
    await mailer.start()
    deadline = time.monotonic() + timeout_s
    while not until() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await mailer.stop()
    await bus.stop()


def test_the_invitation_reaches_the_candidate_after_a_refused_first_attempt(sessions, caplog):
    caplog.set_level(logging.DEBUG)
    with Mailbox(failures=1) as mailbox:
        smtp = SmtpSettings(url=mailbox.url, starttls=False, backoff_s=0.1, from_address="Poise <jobs@poise.test>")

        async def scenario():
            interview_id = await order(sessions, email_invitations=True)
            queued = row(sessions, interview_id).invitation_status
            await run_mailer(sessions, smtp, until=lambda: row(sessions, interview_id).invitation_status != "pending")
            return interview_id, queued

        interview_id, queued = asyncio.run(scenario())

    assert queued == "pending"
    sent = row(sessions, interview_id)
    assert sent.invitation_status == "sent" and sent.invitation_attempts == 2
    assert sent.invitation_error is None and sent.invitation_sent_at is not None
    assert mailbox.attempts == 2 and len(mailbox.received) == 1
    sender, recipients, raw = mailbox.received[0]
    assert sender == "jobs@poise.test" and recipients == [EMAIL]
    message = message_from_bytes(raw, policy=policy.default)
    link = link_of(interview_id, "acme")
    assert message["To"] == EMAIL and message["Subject"] == "Your video interview: Sales development rep"
    text = message.get_body(("plain",)).get_content()
    markup = message.get_body(("html",)).get_content()
    assert link in text and f'href="{link}"' in markup
    # Only the role and the link: nothing else Greenhouse sent about the candidate.
    for private in ("Samantha", "Doe", "555 0100", "greenhouse.io"):
        assert private not in raw.decode(), private
    # The first failure was logged by kind and code; no address or link in any log line.
    failures = [r for r in caplog.records if r.getMessage() == "invitation email" and getattr(r, "error", None)]
    assert [r.error for r in failures] == ["SMTPDataError 451"]
    for record in (r for r in caplog.records if r.name.startswith("poise")):  # not the test server's own log
        logged = record.getMessage() + repr(vars(record))
        assert EMAIL not in logged and link not in logged


def test_an_invitation_the_server_keeps_refusing_is_failed_after_the_last_attempt(sessions):
    with Mailbox(failures=99, reply="550 5.1.1 Mailbox unavailable") as mailbox:
        smtp = SmtpSettings(url=mailbox.url, starttls=False, backoff_s=0.05, max_attempts=3)

        async def scenario():
            interview_id = await order(sessions, email_invitations=True)
            await run_mailer(sessions, smtp, until=lambda: row(sessions, interview_id).invitation_status != "pending")
            await asyncio.sleep(0.3)  # a few more rounds: a failed invitation is never tried again
            return interview_id

        interview_id = asyncio.run(scenario())

    failed = row(sessions, interview_id)
    assert failed.invitation_status == "failed" and failed.invitation_attempts == 3
    assert failed.invitation_error == "SMTPDataError 550"
    assert mailbox.attempts == 3 and mailbox.received == []


def test_without_smtp_or_without_an_address_nothing_is_sent_and_the_start_warns_once(sessions, caplog):
    async def scenario():
        unconfigured = await order(sessions, email_invitations=False)
        no_address = await order(sessions, email_invitations=True, candidate={**ORDER["candidate"], "email": None})
        bus = MemoryBus()
        await bus.start()
        mailer = InvitationMailer(bus, InvitationStore(sessions), SmtpSettings())
        await mailer.start()
        await asyncio.sleep(0.2)
        await mailer.stop()
        await bus.stop()
        return unconfigured, no_address

    caplog.set_level(logging.WARNING)
    unconfigured, no_address = asyncio.run(scenario())
    assert row(sessions, unconfigured).invitation_status == "not_sent"
    assert row(sessions, no_address).invitation_status == "not_sent"
    assert row(sessions, unconfigured).invitation_attempts == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["invitation emails are off: no SMTP server is configured (POISE_SMTP__URL)"]


def test_a_pending_invitation_is_dropped_once_its_interview_is_scored(sessions):
    smtp = SmtpSettings(url=f"127.0.0.1:{free_port()}", starttls=False)

    def scored(interview_id: str, tenant: str) -> Envelope:
        return Envelope(interview_id=interview_id, tenant=tenant, stream="score", seq=0,
                        payload=ScoreEvent(type="interview.scored", scorecard={"competencies": []}))

    async def scenario():
        interview_id = await order(sessions, email_invitations=True)
        mailer = InvitationMailer(MemoryBus(), InvitationStore(sessions), smtp)
        await mailer.on_event(scored(interview_id, "globex"))  # another tenant's event changes nothing
        kept = row(sessions, interview_id).invitation_status
        await mailer.on_event(scored(interview_id, "acme"))
        return interview_id, kept

    interview_id, kept = asyncio.run(scenario())
    assert kept == "pending"
    assert row(sessions, interview_id).invitation_status == "dropped"


@pytest.mark.parametrize("email", ["janet.q@", "jane@[1.2.3"])
def test_an_invitation_whose_message_cannot_be_made_is_failed_once_and_never_logged(sessions, caplog, email):
    # A row from before send_test checked addresses: the email package cannot even parse these.
    caplog.set_level(logging.DEBUG)
    with sessions.begin() as session:
        session.add(GreenhouseTest(id="iv1", tenant="acme", partner_test_id="generic", candidate_email=email,
                                   candidate_name="Janet Quill", invitation_url=link_of("iv1", "acme"),
                                   callback_url=ORDER["url"], invitation_status="pending",
                                   invitation_next_attempt_at=time.time()))
    with Mailbox() as mailbox:
        smtp = SmtpSettings(url=mailbox.url, starttls=False, backoff_s=0.05)

        async def scenario():
            await run_mailer(sessions, smtp, until=lambda: row(sessions, "iv1").invitation_status != "pending")
            await asyncio.sleep(0.3)  # more rounds: a failed invitation is not tried again

        asyncio.run(scenario())

    failed = row(sessions, "iv1")
    assert failed.invitation_status == "failed" and failed.invitation_attempts == 1
    assert failed.invitation_error == "malformed address" and failed.invitation_next_attempt_at is None
    assert mailbox.attempts == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no round of the mailer broke
    for record in (r for r in caplog.records if r.name.startswith("poise")):
        logged = record.getMessage() + repr(vars(record))
        assert email not in logged and "Quill" not in logged


def test_send_test_refuses_a_malformed_address_before_anything_is_queued(sessions):
    response = asyncio.run(send_order(sessions, email_invitations=True,
                                      candidate={**ORDER["candidate"], "email": "janet.q@"}))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "candidate", "email"] and "email must be one address" in error["msg"]
    with sessions() as session:
        assert session.query(GreenhouseTest).count() == 0


def test_smtp_addresses():
    assert smtp_address("mail.example.com:2525") == ("mail.example.com", 2525, False)
    assert smtp_address("smtp://mail.example.com") == ("mail.example.com", 25, False)
    assert smtp_address("smtps://mail.example.com") == ("mail.example.com", 465, True)
    for bad in ("http://mail.example.com", "mail.example.com:smtp", ":25"):
        with pytest.raises(ValueError):
            smtp_address(bad)
