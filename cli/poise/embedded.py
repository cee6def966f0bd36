"""Every Poise service in one process: the embedded deployment.

The services are the same objects the distributed processes run; only the bus (memory://),
the database (SQLite) and the in-process models differ, and those come from settings.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from poise.audit_log_cmd import operator
from poise_audio.service import AudioService
from poise_common.audit_trail import AuditTrail
from poise_common.bus import Bus, create_bus
from poise_common.bus.spread_ids import SpreadIds
from poise_common.crypto import KeyRing
from poise_common.db.engine import create_db_engine, private_dir, session_factory, upgrade
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
        self.bus = create_bus(settings.bus_url)
        await self.bus.start()
        self._ids = SpreadIds(self.bus)
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
        interview_id = self._ids.next()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[interview_id] = waiter
        self._progress[interview_id] = progress or Progress()
        watchdog = asyncio.create_task(self._watch_dead_letters(interview_id))
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
        except (MediaRejected, ScoringFailed) as exc:
            # Nothing half-written: whatever the services stored for it goes on exit.
            self._to_discard.append((interview_id, tenant, str(exc)))
            raise
        finally:
            watchdog.cancel()
            self._waiters.pop(interview_id, None)
            self._progress.pop(interview_id, None)

    async def _check_policy(self, tenant: str) -> None:
        policy = await self._services[0].tenant_policy(tenant)
        policy.require_notice()
        refusal = policy.consent_refusal(None)  # a run from files records no consent
        if refusal:
            raise PolicyError(f"{refusal}; use the API, which records consent when the interview is created")


def uploads_for(paths, questions: list[Question] | None) -> list[AnswerUpload]:
    questions = questions or [Question(question_id=f"q{i + 1}") for i in range(len(paths))]
    if len(questions) != len(paths):
        raise ValueError(f"{len(paths)} answers but {len(questions)} questions")
    return [AnswerUpload(question=q, path=p) for q, p in zip(questions, paths)]
