"""Tables. The same models run on SQLite (embedded) and PostgreSQL (distributed)."""

from __future__ import annotations

import time

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Interview(Base):
    __tablename__ = "interviews"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    # Features can reach fusion before the interview's announcement (they travel on other
    # topics), so the row may exist before role, answer count and questions are known.
    role: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(32), default="processing")  # processing|scored|failed
    answer_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    questions: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    scored_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The candidate's consent to analysis as the interview's creator recorded it
    # ({"given_at": epoch s, "notice_version": str}); a us-il tenant's interview needs one.
    consent: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Answer(Base):
    __tablename__ = "answers"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    interview_id: Mapped[str] = mapped_column(ForeignKey("interviews.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(32), default="processing")
    media: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # AnswerMediaDone payload


class AnswerPart(Base):
    """One analyser's whole-answer result (audio features, transcript, nlp features, vision end)."""

    __tablename__ = "answer_parts"
    __table_args__ = (UniqueConstraint("answer_id", "part"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"), index=True)
    part: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict] = mapped_column(JSON)


class VisionFrame(Base):
    """What vision saw in one sampled frame; the unique key makes a replay a no-op."""

    __tablename__ = "vision_frames"
    __table_args__ = (UniqueConstraint("answer_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    t_s: Mapped[float] = mapped_column(Float)
    face_count: Mapped[int] = mapped_column(Integer)
    face: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Scorecard(Base):
    __tablename__ = "scorecards"

    interview_id: Mapped[str] = mapped_column(
        ForeignKey("interviews.id", ondelete="CASCADE"), primary_key=True
    )
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    document: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class Failure(Base):
    """Why an interview could not be scored (no candidate data, only the reason)."""

    __tablename__ = "failures"

    interview_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class ApiKey(Base):
    """An API key: only a hash of its secret is kept; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list] = mapped_column(JSON)
    name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Webhook(Base):
    """A tenant's endpoint for score events. The secret signs deliveries, so it is kept."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class WebhookDelivery(Base):
    """One event for one webhook: every attempt's outcome, so deliveries can be audited and replayed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "event_type", "interview_id", "answer_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    interview_id: Mapped[str] = mapped_column(String(64), index=True)
    answer_id: Mapped[str] = mapped_column(String(80), default="")
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=time.time, index=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class GreenhouseTest(Base):
    """An interview Greenhouse ordered (Assessment Partner API), and the callback owed to it.

    The id is the interview's (Greenhouse's ``partner_interview_id``). Of the candidate only
    what the invitation needs is kept (email and name); phone, résumé and profile links are not.
    """

    __tablename__ = "greenhouse_tests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    partner_test_id: Mapped[str] = mapped_column(String(128))
    candidate_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    candidate_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    invitation_url: Mapped[str] = mapped_column(Text)
    callback_url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="in_progress")  # in_progress|complete
    # The PATCH to callback_url: None until the test is complete, then pending|delivered.
    callback_status: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The invitation email: not_sent (no email address, or no SMTP server configured), pending
    # (due at invitation_next_attempt_at), sent, failed (gave up), dropped (the interview was scored first).
    invitation_status: Mapped[str] = mapped_column(
        String(16), default="not_sent", server_default="not_sent", index=True
    )
    invitation_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    invitation_next_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    invitation_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    invitation_sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Demographics(Base):
    """A candidate's self-reported sex and race/ethnicity, for bias audits only.

    Never used in scoring. Kept apart from the scorecard so it can be erased on its own; None
    means the candidate did not say (counted as "unknown" in audits).
    """

    __tablename__ = "demographics"

    interview_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    sex: Mapped[str | None] = mapped_column(String(32), nullable=True)
    race_ethnicity: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class ScoringModel(Base):
    """A calibrated scoring model for one tenant and framework (role): fitted weights and its validation report.

    It scores only its tenant's candidates, whose raters it was fitted to: at most one model per
    (tenant, framework) is active; scorecards record the version that made them. Versions are
    unique across tenants, so a scorecard's version names one model.
    """

    __tablename__ = "scoring_models"
    # The database itself keeps a second active model per (tenant, framework) from being written.
    __table_args__ = (
        Index("ux_scoring_models_one_active", "tenant", "framework", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
    )

    version: Mapped[str] = mapped_column(String(160), primary_key=True)
    # None only for models fitted on every tenant's data before models had a tenant: they score no
    # one (migration 0008 says why).
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    framework: Mapped[str] = mapped_column(String(128), index=True)
    framework_version: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict] = mapped_column(JSON)  # per competency: intercept and feature weights
    report: Mapped[dict] = mapped_column(JSON)  # validation figures (blind split, cross-validation, ICC)
    active: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)  # activated below the bar
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    activated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class TenantSettings(Base):
    """Per-tenant settings: the policy profile (default, eu, us-nyc, us-il) and its data."""

    __tablename__ = "tenant_settings"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    policy: Mapped[str] = mapped_column(String(16), default="default")
    # us-nyc: the candidate notice (contact for an alternative process, retention, audit URL).
    notice: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # Days candidate data is kept after an interview is created; None: the deployment's default.
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)


class ScoreOverride(Base):
    """A reviewer's override of one competency score, with the reason. Rows are only ever added:
    the latest per competency applies, the scorecard keeps the model's original score."""

    __tablename__ = "score_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    interview_id: Mapped[str] = mapped_column(ForeignKey("interviews.id", ondelete="CASCADE"), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    competency: Mapped[str] = mapped_column(String(128))
    original_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(128))  # the API key id (or a name given on the CLI)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class CandidateInterview(Base):
    """Which interviews belong to a candidate, for erasure requests by the caller's reference.

    The reference itself is not kept: only a keyed hash of (tenant, reference).
    """

    __tablename__ = "candidate_interviews"

    interview_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    candidate_ref_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class TenantKey(Base):
    """A tenant's data key (AES-256-GCM), stored only wrapped by a master key.

    Several versions may exist: the active one encrypts, every one still decrypts what it wrote.
    """

    __tablename__ = "tenant_keys"
    __table_args__ = (UniqueConstraint("tenant", "version"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random hex; (tenant, version) is unique
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[str] = mapped_column(Text)  # base64 of the AES-GCM wrapped data key
    master_key_id: Mapped[str] = mapped_column(String(64))  # which master key wrapped it
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class Erasure(Base):
    """An erasure request and its receipt: what was removed, never whose data it was."""

    __tablename__ = "erasures"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    candidate_ref_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|completed
    removed: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # counts per kind of data
    requested_at: Mapped[float] = mapped_column(Float, default=time.time)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditEvent(Base):
    """One entry of the append-only, hash-chained audit log.

    ``hash`` = SHA-256 over the previous entry's hash and this entry's canonical JSON, so a
    changed, removed or reordered entry breaks the chain from there on.
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, default=time.time, index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128))  # an API key id, "system", or a CLI operator name
    action: Mapped[str] = mapped_column(String(64))  # e.g. scorecard.read, score.override, candidate.erase
    interview_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # no personal data
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
