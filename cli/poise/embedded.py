"""Every Poise service in one process: the embedded deployment.

The services are the same objects the distributed processes run; only the bus (memory://),
the database (SQLite) and the in-process models differ, and those come from settings.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from poise.audit_log_cmd import operator
from poise_audio.service import AudioService
from poise_common.audit_trail import AuditTrail
from poise_common.bus import Bus, create_bus
from poise_common.crypto import KeyRing
from poise_common.db.engine import create_db_engine, private_dir, session_factory, upgrade
from poise_common.db.models import Interview
from poise_common.inference.backend import create_backend
from poise_common.messages import Envelope, Question, ScoreEvent, Topics
from poise_common.settings import PoiseSettings
from poise_fusion.policy import PolicyError
from poise_fusion.service import FusionService
from poise_fusion.store import FusionStore
from poise_gateway.errors import MediaRejected
from poise_gateway.service import AnswerUpload, Gateway
from poise_nlp.service import NlpService
from poise_vision.service import VisionService

log = logging.getLogger(__name__)

DEAD_LETTER_GROUPS = ("vision", "audio", "nlp", "fusion")
# The interviews a run opens are named cli<its process id in hex>-<random hex>, 32 characters in all
# like a server's (32 hex digits, never an "l" or a "-"): a later run can then tell what a run that
# died (killed, power lost) left behind from a live run's interviews and from a server's sharing
# the database.
_CLI_ID = re.compile(r"cli([0-9a-f]+)-[0-9a-f]+")
# The interviews this process's runs are scoring now: an interview named with this process's id
# and not here was left by an earlier process that had the same id (in containers, runs often do).
_SCORING_HERE: set[str] = set()


class ScoringFailed(RuntimeError):
    pass


@dataclass
class Progress:
    """Callbacks for a progress display; every one is optional."""

    on_answer_scored: Callable[[str], None] | None = None


class EmbeddedPoise:
    """Start with ``async with EmbeddedPoise(settings) as poise:`` then ``await poise.score(...)``.

    ``policy`` overrides the tenant's policy profile for this run; ``actor`` is who the audit log
    names for its scores (default ``cli:<the operating system user>``).
    """

    def __init__(self, settings: PoiseSettings, policy: str | None = None, actor: str | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.actor = actor or operator()
        self.bus: Bus | None = None
        self._services: list = []
        self._waiters: dict[str, asyncio.Future] = {}
        self._progress: dict[str, Progress] = {}
        self._to_discard: list[tuple[str, str, str]] = []

    async def __aenter__(self) -> "EmbeddedPoise":
        settings = self.settings
        private_dir(settings.home_dir)
        engine = create_db_engine(settings.resolved_database_url)
        await asyncio.to_thread(upgrade, engine)
        self.engine = engine
        sessions = session_factory(engine)
        # Transcripts at rest are sealed with the tenant's data key, as in every other mode.
        self.store = FusionStore(sessions, await asyncio.to_thread(KeyRing.from_settings, sessions, settings))
        await asyncio.to_thread(self._discard_abandoned)
        self.bus = create_bus(settings.bus_url)
        await self.bus.start()
        self.gateway = Gateway(self.bus, settings.gateway)
        await asyncio.to_thread(self.gateway.warm_up)
        self._services = [
            # Every score goes to the audit log, as in every other mode.
            FusionService(self.bus, self.store, settings, policy=self.policy, audit=AuditTrail(sessions),
                          actor=self.actor),
            NlpService(self.bus, settings.nlp),
            AudioService(self.bus, settings.audio, create_backend(settings, whole_pipeline=True)),
            VisionService(self.bus, create_backend(settings, whole_pipeline=True), batch_frames=settings.vision.feature_batch_frames),
        ]
        for service in self._services:
            await service.start()
        await self.bus.subscribe([Topics.SCORECARDS], f"embedded-{uuid.uuid4().hex[:8]}", self._on_score)
        # What start-up made (modules, models, settings: most of the heap) lives as long as the
        # process: the collector need not walk it again on every full collection while scoring.
        gc.freeze()
        return self

    async def __aexit__(self, *exc) -> None:
        for service in reversed(self._services):
            await service.stop()
        if self.bus is not None:
            await self.bus.stop()
        # Only once no service can write any more: drop what failed interviews left behind.
        for interview_id, tenant, reason in self._to_discard:
            self.store.discard_interview(interview_id, tenant, reason, record=False)
        self.engine.dispose()

    def _discard_abandoned(self) -> None:
        """Remove what earlier runs left half-written when they were killed: their interviews still
        processing, whose process is gone. A live run's, and a server's, are not touched."""
        with self.store.sessions() as session:
            rows = session.execute(
                select(Interview.id, Interview.tenant).where(Interview.status == "processing",
                                                            Interview.id.like("cli%-%"))
            ).all()
        abandoned = [(i, tenant) for i, tenant in rows if not _run_alive(i)]
        for interview_id, tenant in abandoned:
            self.store.discard_interview(interview_id, tenant, "abandoned", record=False)
        if abandoned:
            log.info("removed %d interview(s) left half-scored by interrupted runs", len(abandoned))

    async def _on_score(self, env: Envelope) -> None:
        event: ScoreEvent = env.payload
        if event.type == "answer.scored":
            progress = self._progress.get(env.interview_id)
            if progress and progress.on_answer_scored:
                progress.on_answer_scored(env.answer_id)
            return
        waiter = self._waiters.get(env.interview_id)
        if waiter is not None and not waiter.done():
            if event.type == "interview.scored":
                waiter.set_result(event.scorecard)
            else:
                waiter.set_exception(ScoringFailed(event.error or "scoring failed"))

    async def _watch_dead_letters(self, interview_id: str) -> None:
        """A message of this interview that no handler could process means it can never finish."""
        while True:
            await asyncio.sleep(0.5)
            for group in DEAD_LETTER_GROUPS:
                for record in await self.bus.read_all(Topics.dead_letter(group)):
                    data = json.loads(record)
                    if f'"interview_id":"{interview_id}"' in data["value"]:
                        raise ScoringFailed(f"the {group} stage could not process this interview: {data['error']}")

    async def score(
        self,
        uploads: list[AnswerUpload],
        role: str | None = None,
        progress: Progress | None = None,
    ) -> dict:
        """Validate, publish and wait for the scorecard. Raises MediaRejected for bad input and
        PolicyError when the policy cannot be met (no notice for us-nyc, no consent for us-il)."""
        role = role or self.settings.fusion.default_role
        self._services[0].framework(role)  # an unknown role fails before anything is written
        tenant = self.settings.tenant
        await self._check_policy(tenant)
        infos = await asyncio.to_thread(self.gateway.validate, uploads)
        interview_id = cli_interview_id()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[interview_id] = waiter
        self._progress[interview_id] = progress or Progress()
        watchdog = asyncio.create_task(self._watch_dead_letters(interview_id))
        _SCORING_HERE.add(interview_id)
        try:
            await self.gateway.open_interview(
                interview_id, tenant, role, [u.question for u in uploads]
            )
            for index, (upload, info) in enumerate(zip(uploads, infos)):
                await self.gateway.publish_answer(interview_id, tenant, index, upload, info)
            done, _ = await asyncio.wait({waiter, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            if watchdog in done:
                watchdog.result()
            return waiter.result()
        except BaseException as exc:
            # Nothing half-written, whatever stopped it (bad media, a failed stage, Ctrl+C, SIGTERM):
            # what the services stored for it goes on exit.
            self._to_discard.append((interview_id, tenant, type(exc).__name__))
            raise
        finally:
            watchdog.cancel()
            _SCORING_HERE.discard(interview_id)
            self._waiters.pop(interview_id, None)
            self._progress.pop(interview_id, None)

    async def _check_policy(self, tenant: str) -> None:
        policy = await self._services[0].tenant_policy(tenant)
        policy.require_notice()
        refusal = policy.consent_refusal(None)  # a run from files records no consent
        if refusal:
            raise PolicyError(f"{refusal}; use the API, which records consent when the interview is created")


def cli_interview_id() -> str:
    """A new interview id naming this process (see _CLI_ID)."""
    stem = f"cli{os.getpid():x}-"
    return stem + uuid.uuid4().hex[: 32 - len(stem)]


def _run_alive(interview_id: str) -> bool:
    """Whether the run that opened ``interview_id`` may still be running (True for ids not a run's).
    A reused process id keeps a dead run's leftovers a while longer, never removes a live run's."""
    match = _CLI_ID.fullmatch(interview_id)
    if match is None:
        return True
    pid = int(match[1], 16)
    if pid == os.getpid():
        return interview_id in _SCORING_HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def uploads_for(paths, questions: list[Question] | None) -> list[AnswerUpload]:
    questions = questions or [Question(question_id=f"q{i + 1}") for i in range(len(paths))]
    if len(questions) != len(paths):
        raise ValueError(f"{len(paths)} answers but {len(questions)} questions")
    return [AnswerUpload(question=q, path=p) for q, p in zip(questions, paths)]
