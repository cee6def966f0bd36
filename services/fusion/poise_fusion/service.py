"""Fusion: join the streams per answer, score complete answers, then whole interviews."""

from __future__ import annotations

import asyncio
import logging

from poise_common.audit_trail import AuditTrail, record_access
from poise_common.bus import Bus, Subscription
from poise_common.messages import Envelope, InterviewOpened, InterviewWithdrawn, ScoreEvent, Topics
from poise_common.settings import PoiseSettings
from poise_fusion.assemble import EvidenceRules, build_answer, build_scorecard, model_version
from poise_fusion.framework import Framework, FrameworkError, get_framework
from poise_fusion.policy import TenantPolicy, TenantPolicyStore
from poise_fusion.scoring_model import ModelStore
from poise_fusion.store import FusionStore, InterviewGone

log = logging.getLogger(__name__)

CONSUMES = (
    Topics.MEDIA_CONTROL,
    Topics.FEATURES_VISION,
    Topics.FEATURES_AUDIO,
    Topics.TRANSCRIPTS,
    Topics.FEATURES_NLP,
)
GROUP = "fusion"


class FusionService:
    """``policy`` overrides every tenant's policy profile (a one-off embedded run); with ``audit``,
    every scorecard is recorded in the audit log before it is stored."""

    def __init__(
        self, bus: Bus, store: FusionStore, settings: PoiseSettings, policies: TenantPolicyStore | None = None,
        policy: str | None = None, audit: AuditTrail | None = None, actor: str = "system",
    ) -> None:
        self.bus = bus
        self.audit = audit
        # Who the audit log names for a score: the service itself, or the operator of a `poise score` run.
        self.actor = actor
        self.store = store
        self.settings = settings
        self.policies = policies or TenantPolicyStore(store.sessions, settings.fusion.default_policy)
        self.policy_override = policy
        self.models = ModelStore(store.sessions)
        self._subscription: Subscription | None = None

    def framework(self, role: str | None) -> Framework:
        return get_framework(role or self.settings.fusion.default_role, self.settings.fusion.frameworks_dir)

    async def tenant_policy(self, tenant: str) -> TenantPolicy:
        return await asyncio.to_thread(self.policies.resolve, tenant, self.policy_override)

    async def _refused(self, env: Envelope, policy: TenantPolicy) -> bool:
        """Fail the interview when ``policy`` forbids analysing it (no consent under us-il)."""
        if not policy.profile.requires_consent:
            return False
        consent = await asyncio.to_thread(self.store.interview_consent, env.interview_id)
        refusal = policy.consent_refusal(consent)
        if refusal:
            await self.fail_interview(env, refusal)
        return refusal is not None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(CONSUMES, GROUP, self.handle)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close(drain=True)

    async def handle(self, env: Envelope) -> None:
        try:
            await self._handle(env)
        except InterviewGone:
            # Erased while this message was handled: its data is gone and stays gone.
            log.info("message for an erased interview dropped", extra={"interview_id": env.interview_id})

    async def _handle(self, env: Envelope) -> None:
        if isinstance(env.payload, InterviewWithdrawn):
            await asyncio.to_thread(self.store.withdraw, env)
            return
        _, complete_answer = await asyncio.to_thread(self.store.apply, env)
        if complete_answer:
            await self._finish_answer(env, complete_answer)
        elif isinstance(env.payload, InterviewOpened):
            # Also when it is a replay (a gateway publishing again what a dead process had
            # published): answers stored complete, or an interview with every answer scored, may
            # have been left unfinished by that process.
            if await self._refused(env, await self.tenant_policy(env.tenant)):
                return
            # The announcement travels on its own topic: answers may have completed before it,
            # and they waited for it to learn the role they are scored for.
            for answer_id in await asyncio.to_thread(self.store.complete_unscored, env.interview_id):
                await self._finish_answer(env, answer_id)
            if await asyncio.to_thread(self.store.interview_ready, env.interview_id):
                await self.finish_interview(env, env.interview_id)

    async def _finish_answer(self, env: Envelope, answer_id: str) -> None:
        announced, role = await asyncio.to_thread(self.store.interview_role, env.interview_id)
        if not announced:
            return  # scored when the announcement (with the role) arrives
        policy = await self.tenant_policy(env.tenant)
        if await self._refused(env, policy):
            return
        try:
            framework = self.framework(role)
        except FrameworkError as exc:
            await self.fail_interview(env, str(exc))
            return
        bundle = await asyncio.to_thread(self.store.answer_bundle, answer_id)
        model = await asyncio.to_thread(self.models.active, env.tenant, framework)
        document = build_answer(bundle, framework, EvidenceRules.from_settings(self.settings), policy.name, model)
        interview_id, ready = await asyncio.to_thread(self.store.save_answer_result, answer_id, document)
        # Built from the answer, not from ``env``: a deferred answer is finished while handling
        # the interview's announcement, whose envelope names no answer.
        event = Envelope(
            interview_id=env.interview_id, answer_id=answer_id, tenant=env.tenant, stream="score", seq=0,
            trace_id=env.trace_id, payload=ScoreEvent(type="answer.scored", scorecard=document),
        )
        await self.bus.publish(Topics.SCORECARDS, event)
        if ready:
            await self.finish_interview(env, interview_id)

    async def fail_interview(self, env: Envelope, reason: str) -> None:
        """The interview cannot be scored: drop what was stored, keep why, and say so on the bus."""
        log.warning("interview cannot be scored: %s", reason)
        await asyncio.to_thread(self.store.discard_interview, env.interview_id, env.tenant, reason)
        event = Envelope(
            interview_id=env.interview_id, tenant=env.tenant, stream="score", seq=0, trace_id=env.trace_id,
            payload=ScoreEvent(type="interview.failed", error=reason),
        )
        await self.bus.publish(Topics.SCORECARDS, event)

    async def finish_interview(self, env: Envelope, interview_id: str) -> None:
        bundle = await asyncio.to_thread(self.store.interview_bundle, interview_id)
        policy = await self.tenant_policy(bundle["tenant"])
        if await self._refused(env, policy):
            return
        framework = self.framework(bundle["role"])
        model = await asyncio.to_thread(self.models.active, bundle["tenant"], framework)
        version = model_version(framework, model)
        # The tenant's policy, or the active scoring model, may have changed while the answers
        # were scored: every answer of the scorecard follows the policy and model it names.
        for index, answer in enumerate(bundle["answers"]):
            if answer.get("policy") != policy.name or answer.get("model_version") != version:
                answer_bundle = await asyncio.to_thread(self.store.answer_bundle, answer["answer_id"])
                bundle["answers"][index] = build_answer(
                    answer_bundle, framework, EvidenceRules.from_settings(self.settings), policy.name, model
                )
        scorecard = build_scorecard(bundle, framework, policy.name, policy.candidate_notice(framework), model)
        # Before it is stored: no scorecard exists without its entry (a failure here fails the message).
        await record_access(self.audit, tenant=bundle["tenant"], actor=self.actor, action="interview.scored",
                            interview_id=interview_id, detail={"model_version": version, "policy": policy.name})
        saved = await asyncio.to_thread(
            self.store.save_scorecard, interview_id, bundle["tenant"], version, scorecard
        )
        if saved:
            log.info("interview scored (%d answers)", len(bundle["answers"]))
        event = Envelope(
            interview_id=interview_id, tenant=bundle["tenant"], stream="score", seq=0,
            trace_id=env.trace_id, payload=ScoreEvent(type="interview.scored", scorecard=scorecard),
        )
        await self.bus.publish(Topics.SCORECARDS, event)
