"""Invitation emails for Greenhouse-ordered interviews, sent through SMTP from an outbox.

send_test marks a test's invitation ``pending`` when the candidate has an email address and an
SMTP server is configured (``POISE_SMTP__URL``), else ``not_sent``. :class:`InvitationMailer`
sends the pending ones (plain text and HTML: the role and the candidate's link, nothing else)
and records each attempt on the row: ``sent``, or a retry with exponential backoff, or
``failed`` after ``smtp.max_attempts``, or at once when no message can be made for its address
(send_test refuses malformed addresses; this guards rows written before it did). An invitation
still pending when its interview has been scored is ``dropped``. Addresses and links never reach a log line; an error is kept as
its kind and SMTP code only (a refusal's text can quote the address).
"""

from __future__ import annotations

import asyncio
import html
import logging
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from poise_common.bus import Bus
from poise_common.db.models import GreenhouseTest
from poise_common.messages import Envelope, ScoreEvent
from poise_common.settings import SmtpSettings
from poise_fusion.greenhouse import role_title
from poise_fusion.outbox import OutboxSender

log = logging.getLogger(__name__)

# Backoff of a failed invitation: backoff_s * 2**(attempts - 1), never longer than this.
MAX_BACKOFF_S = 3600.0


# -- the store --------------------------------------------------------------------------------
class InvitationStore:
    """The invitation columns of ``greenhouse_tests``."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def due(self, now: float, limit: int = 20) -> list[tuple[str, str, str, str, int]]:
        """(interview_id, email, role, link, attempts) of pending invitations due by ``now``."""
        with self.sessions() as session:
            rows = session.execute(
                select(GreenhouseTest.id, GreenhouseTest.candidate_email, GreenhouseTest.partner_test_id,
                       GreenhouseTest.invitation_url, GreenhouseTest.invitation_attempts)
                .where(GreenhouseTest.invitation_status == "pending", GreenhouseTest.invitation_next_attempt_at <= now)
                .order_by(GreenhouseTest.invitation_next_attempt_at).limit(limit)
            ).all()
            return [tuple(r) for r in rows]

    def record(self, interview_id: str, *, ok: bool, error: str | None, retry_at: float | None) -> str | None:
        """One attempt's outcome; ``retry_at`` None gives up. Returns the new status."""
        with self.sessions.begin() as session:
            row = session.get(GreenhouseTest, interview_id)
            if row is None or row.invitation_status != "pending":
                return None
            row.invitation_attempts += 1
            row.invitation_error = error
            if ok:
                row.invitation_status, row.invitation_sent_at, row.invitation_next_attempt_at = "sent", time.time(), None
            elif retry_at is None:
                row.invitation_status, row.invitation_next_attempt_at = "failed", None
            else:
                row.invitation_next_attempt_at = retry_at
            return row.invitation_status

    def drop(self, interview_id: str, tenant: str) -> bool:
        """Stop inviting to an interview that was scored already; True if one was pending."""
        with self.sessions.begin() as session:
            row = session.get(GreenhouseTest, interview_id)
            if row is None or row.tenant != tenant or row.invitation_status != "pending":
                return False
            row.invitation_status, row.invitation_next_attempt_at = "dropped", None
            return True


# -- the message ------------------------------------------------------------------------------
def compose_invitation(sender: str, recipient: str, role: str, link: str) -> EmailMessage:
    """The invitation: the role and the link, as plain text with an HTML alternative."""
    title = role_title(role)
    message = EmailMessage()
    message["Subject"] = f"Your video interview: {title}"
    message["From"] = sender
    message["To"] = recipient
    message["Message-ID"] = make_msgid(domain="poise.invalid")
    message.set_content(
        "Hello,\n\n"
        f"You are invited to a video interview for the role: {title}.\n\n"
        "Open this link to read how the interview works and to answer the questions, with your camera "
        f"or with video files you recorded:\n\n{link}\n\n"
        "The link is personal: please do not share it. If you would prefer to be assessed another way, "
        "write to the recruiter who asked you to apply.\n"
    )
    safe_title, safe_link = html.escape(title), html.escape(link, quote=True)
    message.add_alternative(
        "<!doctype html><html lang=\"en\"><body>"
        "<p>Hello,</p>"
        f"<p>You are invited to a video interview for the role: <strong>{safe_title}</strong>.</p>"
        "<p>Open this link to read how the interview works and to answer the questions, with your camera "
        "or with video files you recorded:</p>"
        f"<p><a href=\"{safe_link}\">Start your video interview</a></p>"
        f"<p>If the link does not open, copy this address into your browser:<br>{safe_link}</p>"
        "<p>The link is personal: please do not share it. If you would prefer to be assessed another way, "
        "write to the recruiter who asked you to apply.</p>"
        "</body></html>",
        subtype="html",
    )
    return message


# -- SMTP --------------------------------------------------------------------------------------
def smtp_address(url: str) -> tuple[str, int, bool]:
    """(host, port, implicit TLS) from ``host:port``, ``smtp://host:port`` or ``smtps://host:port``."""
    parsed = urlparse(url if "://" in url else f"smtp://{url}")
    if parsed.scheme not in ("smtp", "smtps") or not parsed.hostname:
        raise ValueError("POISE_SMTP__URL must be host:port, smtp://host:port or smtps://host:port")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError("POISE_SMTP__URL has a port that is not a number") from None
    implicit_tls = parsed.scheme == "smtps"
    return parsed.hostname, port or (465 if implicit_tls else 25), implicit_tls


def deliver(smtp: SmtpSettings, message: EmailMessage) -> None:
    """Send one message through the configured server (blocking; raises on any failure)."""
    host, port, implicit_tls = smtp_address(smtp.url or "")
    context = ssl.create_default_context()
    client = (smtplib.SMTP_SSL(host, port, timeout=smtp.timeout_s, context=context) if implicit_tls
              else smtplib.SMTP(host, port, timeout=smtp.timeout_s))
    with client:
        if smtp.starttls and not implicit_tls:
            client.starttls(context=context)
        if smtp.username:
            client.login(smtp.username, smtp.password.get_secret_value() if smtp.password else "")
        client.send_message(message)


def _error_of(exc: Exception) -> str:
    # Only the kind and the SMTP code: a server's text may quote the recipient's address.
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = next((c for c, _ in exc.recipients.values()), None)
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__


# -- the sender --------------------------------------------------------------------------------
class InvitationMailer(OutboxSender):
    """Sends pending invitation emails through SMTP until sent or ``smtp.max_attempts`` is reached.

    Without an SMTP server configured it does nothing (and says so once at start): send_test
    then marks invitations ``not_sent``.
    """

    group = "invitations"

    def __init__(self, bus: Bus, store: InvitationStore, smtp: SmtpSettings, *, poll_s: float = 1.0) -> None:
        super().__init__(bus, timeout_s=smtp.timeout_s, poll_s=poll_s)
        self.store = store
        self.smtp = smtp
        self.backoff_s, self.max_backoff_s = smtp.backoff_s, MAX_BACKOFF_S
        if smtp.url:
            smtp_address(smtp.url)  # a malformed setting fails the start, not every attempt

    @property
    def enabled(self) -> bool:
        return bool(self.smtp.url)

    async def start(self) -> None:
        if not self.enabled:
            log.warning("invitation emails are off: no SMTP server is configured (POISE_SMTP__URL)")
            return
        await super().start()

    async def on_event(self, env: Envelope) -> None:
        # An invitation to an interview already scored would only confuse its recipient.
        if isinstance(env.payload, ScoreEvent) and env.payload.type == "interview.scored":
            if await asyncio.to_thread(self.store.drop, env.interview_id, env.tenant):
                log.info("invitation dropped: interview already scored", extra={"interview_id": env.interview_id})

    def due(self, now: float) -> list[tuple]:
        return self.store.due(now)

    async def send(self, interview_id: str, email: str, role: str, link: str, attempts: int) -> None:
        attempt, error, retry = attempts + 1, None, True
        try:
            message = compose_invitation(self.smtp.from_address, email, role, link)
        except Exception:  # noqa: BLE001 - the email package fails on a malformed address with
            # ValueError, IndexError or AttributeError alike; no retry will fix any of them.
            error, retry = "malformed address", False
        else:
            try:
                await asyncio.to_thread(deliver, self.smtp, message)
            except (smtplib.SMTPException, OSError) as exc:
                error = _error_of(exc)
            except (ValueError, LookupError, AttributeError) as exc:  # the message itself cannot be sent
                error, retry = type(exc).__name__, False
        retry_at = time.time() + self.backoff(attempt) if retry and attempt < self.smtp.max_attempts else None
        status = await asyncio.to_thread(
            self.store.record, interview_id, ok=error is None, error=error, retry_at=retry_at
        )
        log.info("invitation email", extra={"interview_id": interview_id, "attempt": attempt, "status": status,
                                            "error": error})
