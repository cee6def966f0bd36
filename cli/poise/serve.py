"""`poise serve`: the embedded deployment as a server: every service in one process, one API.

The same service objects and routers as the distributed processes (gateway uploads, fusion
scorecards), on the bus and database the settings name (by default the in-memory bus and
SQLite), for a team that wants the API without Kafka, and the reviewers' dashboard at
``/dashboard/`` (the answers' videos from the same origin). The gRPC API
(``poise.v1.ScoringService``, every method) is served beside it on ``grpc_port``.
"""

from __future__ import annotations

import asyncio
import functools

from prometheus_client import CollectorRegistry

from poise_common.bus import Bus
from poise_common.runtime import ServiceParts
from poise_common.settings import PoiseSettings


async def build(
    settings: PoiseSettings, bus: Bus, registry: CollectorRegistry, *, grpc_port: int | None = None
) -> ServiceParts:
    """Every service; with ``grpc_port`` (bind it with functools.partial) also the gRPC API on it."""
    from poise_audio.service import AudioService
    from poise_common.audit_trail import AuditTrail
    from poise_common.auth import KeyStore
    from poise_common.crypto import KeyRing
    from poise_common.db.engine import create_db_engine, private_dir, session_factory, upgrade
    from poise_common.grpc_api.server import GrpcServer, ScoringServicer
    from poise_common.inference.backend import create_backend
    from poise_common.metrics import InferenceMetrics
    from poise_fusion.api import create_router as scorecard_routes
    from poise_fusion.audit_log_api import create_audit_log_router
    from poise_fusion.dashboard import create_dashboard_router
    from poise_fusion.demographics import DemographicsStore, create_demographics_router
    from poise_fusion.erasure import CandidateIndex, Eraser, create_erasure_router
    from poise_fusion.events import EventHub
    from poise_fusion.webhook_api import create_webhook_router
    from poise_fusion.webhooks import WebhookDispatcher, WebhookStore
    from poise_fusion.framework import get_framework
    from poise_fusion.greenhouse import GreenhouseNotifier, GreenhouseStore, create_greenhouse_router
    from poise_fusion.invitations import InvitationMailer, InvitationStore
    from poise_fusion.notices import create_notice_router
    from poise_fusion.overrides import OverrideStore, create_override_router
    from poise_fusion.policy import TenantPolicyStore
    from poise_fusion.policy_api import create_tenant_settings_router
    from poise_fusion.retention import RetentionJob
    from poise_fusion.service import FusionService
    from poise_fusion.store import FusionStore
    from poise_gateway.api import NewInterview, UploadDesk
    from poise_gateway.candidate import InvitationSigner, create_candidate_router
    from poise_gateway.api import create_router as upload_routes
    from poise_gateway.media_api import MediaLinks, create_media_router
    from poise_gateway.media_vault import MediaVault
    from poise_gateway.service import Gateway
    from poise_nlp.service import NlpService
    from poise_vision.service import VisionService

    get_framework(settings.fusion.default_role, settings.fusion.frameworks_dir)
    private_dir(settings.home_dir)
    engine = create_db_engine(settings.resolved_database_url)
    if settings.migrate_on_start:  # otherwise a migration step ran before the server
        await asyncio.to_thread(upgrade, engine)
    sessions = session_factory(engine)
    data_keys = await asyncio.to_thread(KeyRing.from_settings, sessions, settings)
    store, keys = FusionStore(sessions, data_keys), KeyStore(sessions)
    audit = AuditTrail(sessions)
    policies = TenantPolicyStore(sessions, settings.fusion.default_policy)
    candidates = CandidateIndex(sessions, data_keys)
    desk = UploadDesk(settings.media_dir, Gateway(bus, settings.gateway), settings.gateway,
                      default_role=settings.fusion.default_role, policies=policies,
                      vault=MediaVault(data_keys, settings.media_dir / ".clear", audit), candidates=candidates)
    eraser = Eraser(sessions, candidates, desk, audit)
    await asyncio.to_thread(desk.prepare)
    metrics = InferenceMetrics(registry, "serve")
    events = EventHub(bus)
    hooks = WebhookStore(sessions, allow_private=settings.fusion.allow_private_targets)
    greenhouse = GreenhouseStore(sessions)
    public_base_url = settings.public_base_url(settings.serve.port)
    signer = await asyncio.to_thread(InvitationSigner.from_settings, settings)

    async def open_interview(role: str, questions: list[dict], tenant: str) -> str:
        return await desk.create(NewInterview(role=role, questions=questions), tenant)
    services = [
        events,
        WebhookDispatcher(bus, hooks, settings.fusion),
        GreenhouseNotifier(bus, greenhouse, allow_private=settings.fusion.allow_private_targets),
        InvitationMailer(bus, InvitationStore(sessions), settings.smtp),
        FusionService(bus, store, settings, policies, audit=audit),
        NlpService(bus, settings.nlp),
        AudioService(bus, settings.audio, create_backend(settings, metrics, whole_pipeline=True)),
        VisionService(bus, create_backend(settings, metrics, whole_pipeline=True), batch_frames=settings.vision.feature_batch_frames),
        RetentionJob(sessions, settings.retention, media=desk, audit=audit),
    ]
    if grpc_port is not None:  # last: started once its backends are, stopped before them
        servicer = ScoringServicer(keys, desk=desk, store=store, events=events, audit=audit, eraser=eraser)
        services.append(GrpcServer(servicer, settings.http_host, grpc_port))
    return ServiceParts(
        services=services,
        routers=[
            upload_routes(desk, settings, keys, audit),
            scorecard_routes(store, settings, keys, events, audit),
            create_webhook_router(hooks, keys, audit),
            create_demographics_router(DemographicsStore(sessions), keys, audit),
            create_tenant_settings_router(policies, keys),
            create_override_router(OverrideStore(sessions), keys, audit),
            create_audit_log_router(audit, keys),
            create_notice_router(policies, keys, frameworks_dir=settings.fusion.frameworks_dir,
                                 default_role=settings.fusion.default_role),
            create_greenhouse_router(greenhouse, store, keys, open_interview,
                                     frameworks_dir=settings.fusion.frameworks_dir, public_base_url=public_base_url,
                                     invitation_link=functools.partial(signer.link, public_base_url),
                                     discard_interview=desk.erase, email_invitations=bool(settings.smtp.url),
                                     allow_private_targets=settings.fusion.allow_private_targets, audit=audit),
            create_candidate_router(desk, signer, keys, public_base_url, audit),
            create_erasure_router(eraser, keys),
            create_media_router(desk, keys, MediaLinks.from_settings(settings), audit),
            create_dashboard_router(keys, settings.fusion.frameworks_dir),
        ],
        close=[engine.dispose],
    )
