"""Fusion's state in the database: every message it applies, once, in one transaction.

Fusion keeps nothing in memory between messages, so any replica (or a restarted process)
can finish any interview; the unique keys make a replayed message a no-op.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import CompoundSelect, and_, cast, delete, func, insert, literal, null, or_, select, union_all
from sqlalchemy.orm import Session, sessionmaker

from poise_common.db.models import Answer, AnswerPart, Failure, Interview, Scorecard, VisionFrame
from poise_common.messages import (
    AnswerMediaDone,
    AudioFeatures,
    Envelope,
    FrameFeatures,
    FrameFeaturesBatch,
    FrameSeen,
    InterviewOpened,
    NlpFeatures,
    Transcript,
    VisionEnd,
)
from poise_common.paging import Cursor
from poise_fusion import overrides
from poise_fusion.sealed import seal, unseal

if TYPE_CHECKING:
    from poise_common.crypto import KeyRing

# Parts an answer needs before it can be scored; "media" is the gateway's announcement.
REQUIRED_PARTS = frozenset({"media", "vision_end", "audio", "transcript", "nlp"})
_PART_OF = {
    AudioFeatures: "audio",
    Transcript: "transcript",
    NlpFeatures: "nlp",
    VisionEnd: "vision_end",
}
# Failure.reason of an erased interview: its id is all that is kept, so late messages are dropped.
ERASED_REASON = "erased"
# Answer.status of an answer the gateway withdrew: its id is all that is kept, for the same reason.
WITHDRAWN = "withdrawn"


class InterviewGone(LookupError):
    """The interview was erased (or discarded) while one of its messages was being handled."""


def _part_aad(answer_id: str, part: str) -> str:
    return f"answer_part\n{answer_id}\n{part}"


def _scorecard_aad(interview_id: str) -> str:
    return f"scorecard\n{interview_id}"


def _listing(tenant: str, status: str | None, role: str | None) -> CompoundSelect:
    """The rows ``list_interviews`` pages through: the tenant's interviews, and its failed ones
    (kept as Failure rows only), in the same columns."""
    interviews = select(
        Interview.id.label("interview_id"), Interview.role, Interview.status, Interview.answer_count,
        Interview.created_at, Interview.scored_at,
    ).where(Interview.tenant == tenant)
    if status:
        interviews = interviews.where(Interview.status == status)
    if role:
        interviews = interviews.where(Interview.role == role)
    parts = [interviews]
    if status in (None, "failed") and not role:
        parts.append(select(
            Failure.interview_id, cast(null(), Interview.role.type).label("role"),
            cast(literal("failed"), Interview.status.type).label("status"),
            cast(null(), Interview.answer_count.type).label("answer_count"), Failure.created_at,
            cast(null(), Interview.scored_at.type).label("scored_at"),
        ).where(Failure.tenant == tenant, Failure.reason != ERASED_REASON))
    return union_all(*parts)


class FusionStore:
    """``keys``: what the candidate said (answer parts, transcripts and quotes in scorecards) is
    stored encrypted with the tenant's data key; None stores it in the clear."""

    def __init__(self, sessions: sessionmaker, keys: KeyRing | None = None) -> None:
        self.sessions = sessions
        self.keys = keys
        # SQLite has one writer; a process-wide lock also makes the completion check atomic.
        # On PostgreSQL the row lock taken in _lock_interview does that across replicas.
        self._lock = threading.Lock()

    # -- applying messages ---------------------------------------------------------------
    def apply(self, env: Envelope) -> tuple[bool, str | None]:
        """Store ``env``. Returns (applied, the id of its answer when every part of that answer is
        in and it is not scored yet, also when ``env`` was a replay; else None)."""
        with self._lock, self.sessions.begin() as session:
            interview = self._lock_interview(session, env)
            if interview is None:
                return False, None  # a failed interview: its late messages change nothing
            payload = env.payload
            if isinstance(payload, InterviewOpened):
                if interview.answer_count is not None:
                    return False, None
                interview.role = payload.role
                interview.answer_count = len(payload.questions)
                interview.questions = [q.model_dump() for q in payload.questions]
                interview.consent = payload.consent.model_dump() if payload.consent else None
                return True, None
            answer = self._answer(session, env)
            if answer.status != "processing":
                return False, None  # already scored: a replay
            if isinstance(payload, FrameFeatures):  # one frame, from a worker of an earlier release
                payload = FrameFeaturesBatch(frames=[FrameSeen(seq=env.seq, **payload.model_dump(exclude={"kind"}))])
            if isinstance(payload, FrameFeaturesBatch):
                return self._add_frames(session, answer.id, payload), None
            if isinstance(payload, AnswerMediaDone):
                if answer.media is not None:
                    return False, self._complete_id(session, answer)
                answer.media = payload.model_dump(mode="json")
                answer.question_id = payload.question_id
                part = "media"
            else:
                part = _PART_OF[type(payload)]
                exists = session.scalar(
                    select(AnswerPart.id).where(AnswerPart.answer_id == answer.id, AnswerPart.part == part)
                )
                if exists:
                    return False, self._complete_id(session, answer)
                data = seal(self.keys, interview.tenant, payload.model_dump(mode="json"), _part_aad(answer.id, part),
                            whole=True)
                session.add(AnswerPart(answer_id=answer.id, part=part, data=data))
            session.flush()
            return True, self._complete_id(session, answer)

    def _complete_id(self, session: Session, answer: Answer) -> str | None:
        """The answer's id when every part of it is in. Also for a replayed part, which adds
        nothing: the process that stored the last part may have died before it scored the answer."""
        return answer.id if self._complete(session, answer) else None

    def withdraw(self, env: Envelope) -> None:
        """Forget what arrived for the answers ``env`` withdraws (an ``InterviewWithdrawn``): their
        parts and frames go, each id stays as a withdrawn answer so that its late messages are
        dropped, and the interview waits for its next announcement. Safe to repeat."""
        prefix = f"{env.interview_id}-"
        # Only the interview's own answers: an id is never another interview's.
        answer_ids = [a for a in env.payload.answer_ids if a.startswith(prefix)]
        with self._lock, self.sessions.begin() as session:
            interview = self._lock_interview(session, env)
            if interview is None:
                return  # failed or erased: nothing of it is kept
            session.execute(delete(AnswerPart).where(AnswerPart.answer_id.in_(answer_ids)))
            session.execute(delete(VisionFrame).where(VisionFrame.answer_id.in_(answer_ids)))
            for answer_id in answer_ids:
                answer = self._answer(session, env.model_copy(update={"answer_id": answer_id}))
                answer.status, answer.media, answer.question_id = WITHDRAWN, None, None
            interview.answer_count = None

    @staticmethod
    def _add_frames(session: Session, answer_id: str, batch: FrameFeaturesBatch) -> bool:
        """Insert the batch's frames not stored yet (a replay resends some), in one statement."""
        seqs = [frame.seq for frame in batch.frames]
        stored = set(session.scalars(
            select(VisionFrame.seq).where(VisionFrame.answer_id == answer_id, VisionFrame.seq.in_(seqs))))
        rows = [
            {"answer_id": answer_id, "seq": frame.seq, "t_s": frame.t_s, "face_count": frame.face_count,
             "face": frame.face.model_dump(mode="json") if frame.face else None}
            for frame in batch.frames if frame.seq not in stored
        ]
        if rows:
            session.execute(insert(VisionFrame), rows)
        return bool(rows)

    def _lock_interview(self, session: Session, env: Envelope) -> Interview | None:
        interview = session.scalar(
            select(Interview).where(Interview.id == env.interview_id).with_for_update()
        )
        if interview is None and session.get(Failure, env.interview_id) is not None:
            return None
        if interview is None:
            interview = Interview(id=env.interview_id, tenant=env.tenant, status="processing")
            session.add(interview)
            session.flush()
        return interview

    def _answer(self, session: Session, env: Envelope) -> Answer:
        answer = session.get(Answer, env.answer_id)
        if answer is None:
            answer = Answer(id=env.answer_id, interview_id=env.interview_id, status="processing")
            session.add(answer)
            session.flush()
        return answer

    def _complete(self, session: Session, answer: Answer) -> bool:
        parts = set(session.scalars(select(AnswerPart.part).where(AnswerPart.answer_id == answer.id)))
        if answer.media is not None:
            parts.add("media")
        return REQUIRED_PARTS <= parts

    # -- reading what scoring needs ------------------------------------------------------
    def answer_bundle(self, answer_id: str) -> dict:
        with self.sessions() as session:
            answer = session.get(Answer, answer_id)
            interview = None if answer is None else session.get(Interview, answer.interview_id)
            if interview is None:
                raise InterviewGone(answer_id)
            parts = {
                p.part: unseal(self.keys, interview.tenant, p.data, _part_aad(answer_id, p.part))
                for p in session.scalars(select(AnswerPart).where(AnswerPart.answer_id == answer_id))
            }
            frames = [
                (f.t_s, f.face_count, f.face)
                for f in session.scalars(
                    select(VisionFrame).where(VisionFrame.answer_id == answer_id).order_by(VisionFrame.seq)
                )
            ]
            return {
                "answer_id": answer_id,
                "interview_id": answer.interview_id,
                "question_id": answer.question_id,
                "questions": interview.questions or [],
                "media": answer.media,
                "parts": parts,
                "frames": frames,
            }

    def save_answer_result(self, answer_id: str, document: dict) -> tuple[str, bool]:
        """Mark the answer scored. Returns (interview_id, every answer of it is now scored)."""
        with self._lock, self.sessions.begin() as session:
            answer = session.get(Answer, answer_id)
            interview = None if answer is None else session.scalar(
                select(Interview).where(Interview.id == answer.interview_id).with_for_update()
            )
            if interview is None:
                raise InterviewGone(answer_id)
            if answer.status == "processing":
                answer.status = "scored"
                data = seal(self.keys, interview.tenant, document, _part_aad(answer_id, "result"), whole=True)
                session.add(AnswerPart(answer_id=answer_id, part="result", data=data))
            scored = session.scalar(
                select(func.count()).select_from(Answer).where(
                    Answer.interview_id == interview.id, Answer.status == "scored"
                )
            )
            ready = (
                interview.answer_count is not None
                and scored == interview.answer_count
                and interview.status == "processing"
            )
            return interview.id, ready

    def complete_unscored(self, interview_id: str) -> list[str]:
        """Answers whose streams are all in but that are not scored yet (waiting for the role)."""
        with self.sessions() as session:
            answers = session.scalars(
                select(Answer).where(Answer.interview_id == interview_id, Answer.status == "processing")
            )
            return [a.id for a in answers if self._complete(session, a)]

    def interview_role(self, interview_id: str) -> tuple[bool, str | None]:
        """(announced, role): the role is known only once the interview's announcement arrived."""
        with self.sessions() as session:
            interview = session.get(Interview, interview_id)
            if interview is None or interview.answer_count is None:
                return False, None
            return True, interview.role

    def interview_consent(self, interview_id: str) -> dict | None:
        """The candidate's consent the announcement recorded ({given_at, notice_version}), or None."""
        with self.sessions() as session:
            interview = session.get(Interview, interview_id)
            return None if interview is None else interview.consent

    def interview_ready(self, interview_id: str) -> bool:
        with self.sessions() as session:
            interview = session.get(Interview, interview_id)
            scored = session.scalar(
                select(func.count()).select_from(Answer).where(
                    Answer.interview_id == interview_id, Answer.status == "scored"
                )
            )
            return (
                interview is not None
                and interview.status == "processing"
                and interview.answer_count is not None
                and scored == interview.answer_count
            )

    def interview_bundle(self, interview_id: str) -> dict:
        with self.sessions() as session:
            interview = session.get(Interview, interview_id)
            if interview is None:
                raise InterviewGone(interview_id)
            answers = []
            scored = select(Answer).where(Answer.interview_id == interview_id, Answer.status == "scored")
            for answer in session.scalars(scored):  # not the withdrawn ones
                result = session.scalar(
                    select(AnswerPart.data).where(AnswerPart.answer_id == answer.id, AnswerPart.part == "result")
                )
                answers.append(unseal(self.keys, interview.tenant, result, _part_aad(answer.id, "result")))
            return {
                "interview_id": interview.id,
                "tenant": interview.tenant,
                "role": interview.role,
                "questions": interview.questions or [],
                "consent": interview.consent,
                "answers": answers,
            }

    def save_scorecard(self, interview_id: str, tenant: str, model_version: str, document: dict) -> bool:
        """Store the scorecard once. Returns False when it was already there (a replay)."""
        with self._lock, self.sessions.begin() as session:
            interview = session.scalar(select(Interview).where(Interview.id == interview_id).with_for_update())
            if interview is None:
                raise InterviewGone(interview_id)
            if interview.status == "scored" or session.get(Scorecard, interview_id) is not None:
                return False
            interview.status = "scored"
            interview.scored_at = time.time()
            stored = seal(self.keys, tenant, document, _scorecard_aad(interview_id))
            session.add(
                Scorecard(interview_id=interview_id, tenant=tenant, model_version=model_version, document=stored)
            )
            return True

    def interview_status(self, interview_id: str) -> tuple[str, str] | None:
        """(tenant, status) of an interview: processing, scored, or failed; None if unknown."""
        with self.sessions() as session:
            interview = session.get(Interview, interview_id)
            if interview is not None and not self._withdrawn(session, interview):
                return interview.tenant, interview.status
            if interview is not None:
                return None  # withdrawn, open at the gateway again: as if it had not been published
            failure = session.get(Failure, interview_id)
            # An erased interview is unknown, as if it had never been.
            return None if failure is None or failure.reason == ERASED_REASON else (failure.tenant, "failed")

    @staticmethod
    def _withdrawn(session: Session, interview: Interview) -> bool:
        """Whether the gateway withdrew the interview and has not announced it again."""
        if interview.answer_count is not None:
            return False
        statuses = set(session.scalars(select(Answer.status).where(Answer.interview_id == interview.id)))
        return statuses == {WITHDRAWN}

    def failure_reason(self, interview_id: str) -> str | None:
        """Why the interview could not be scored; None when it did not fail (or was erased).

        The reason is written by the code (a policy's refusal, a framework that cannot be
        used): it names policies and roles, never the candidate."""
        with self.sessions() as session:
            failure = session.get(Failure, interview_id)
            return None if failure is None or failure.reason == ERASED_REASON else failure.reason

    def list_interviews(
        self, tenant: str, *, status: str | None = None, role: str | None = None, limit: int = 50,
        after: Cursor | None = None,
    ) -> list[dict]:
        """A tenant's interviews, newest first (ties by id); ``after`` is the previous page's last row.

        Failed interviews are listed too (status failed) from what is kept of them, their Failure
        row: it has no role or answer count (null), so a role filter leaves them out. Erased ones
        are not listed."""
        listed = _listing(tenant, status, role).subquery()
        query = select(listed)
        if after is not None:
            query = query.where(or_(
                listed.c.created_at < after.created_at,
                and_(listed.c.created_at == after.created_at, listed.c.interview_id > after.interview_id),
            ))
        query = query.order_by(listed.c.created_at.desc(), listed.c.interview_id).limit(limit)
        with self.sessions() as session:
            return [dict(row) for row in session.execute(query).mappings()]

    def scorecard(self, interview_id: str) -> dict | None:
        with self.sessions() as session:
            row = session.get(Scorecard, interview_id)
            return None if row is None else unseal(self.keys, row.tenant, row.document, _scorecard_aad(interview_id))

    def reviewed_scorecard(self, interview_id: str) -> dict | None:
        """The scorecard as every reader serves it: reviewers' overrides applied, the model's scores kept."""
        with self.sessions() as session:
            row = session.get(Scorecard, interview_id)
            if row is None:
                return None
            document = unseal(self.keys, row.tenant, row.document, _scorecard_aad(interview_id))
            return overrides.apply(document, overrides.overrides_of(session, interview_id))

    def discard_interview(self, interview_id: str, tenant: str, reason: str, record: bool = True) -> None:
        """Remove everything stored for an interview that cannot be scored; keep only why."""
        with self._lock, self.sessions.begin() as session:
            created_at = session.scalar(select(Interview.created_at).where(Interview.id == interview_id))
            session.execute(delete(Interview).where(Interview.id == interview_id))
            if record and session.get(Failure, interview_id) is None:
                failure = Failure(interview_id=interview_id, tenant=tenant, reason=reason)
                if created_at is not None:
                    # Dated as the interview was: its place in a listing (and a cursor naming it)
                    # stays the same when it fails, and retention ages it from the same day.
                    failure.created_at = created_at
                session.add(failure)
