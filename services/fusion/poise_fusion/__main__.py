"""``python -m poise_fusion``: fusion as its own process (streams -> scorecards, plus the scorecard API)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from poise_common.bus import Bus
from poise_common.runtime import ServiceParts, main
from poise_common.settings import PoiseSettings


async def build(settings: PoiseSettings, bus: Bus, registry: CollectorRegistry) -> ServiceParts:
    """Database (migrated once, here), store, fusion service and the scorecard API; with
    POISE_GRPC_PORT set, also the gRPC API's read and event methods on that port."""
    from poise_common.audit_trail import AuditTrail
    from poise_common.auth import KeyStore
    from poise_common.crypto import KeyRing
    from poise_common.db.engine import create_db_engine, session_factory, upgrade
    from poise_common.grpc_api.server import GrpcServer, ScoringServicer, port_from_env
    from poise_fusion.api import create_router
    from poise_fusion.audit_log_api import create_audit_log_router
    from poise_fusion.dashboard import create_dashboard_router
    from poise_fusion.demographics import DemographicsStore, create_demographics_router
    from poise_fusion.events import EventHub
    from poise_fusion.framework import get_framework
    from poise_fusion.greenhouse import GreenhouseNotifier, GreenhouseStore
    from poise_fusion.invitations import InvitationMailer, InvitationStore
    from poise_fusion.overrides import OverrideStore, create_override_router
    from poise_fusion.policy import TenantPolicyStore
    from poise_fusion.policy_api import create_tenant_settings_router
    from poise_fusion.retention import RetentionJob
    from poise_fusion.service import FusionService
    from poise_fusion.store import FusionStore
    from poise_fusion.webhook_api import create_webhook_router
    from poise_fusion.webhooks import WebhookDispatcher, WebhookStore

    # A broken frameworks folder or default role fails the start, not the first interview.
    get_framework(settings.fusion.default_role, settings.fusion.frameworks_dir)
    grpc_port = port_from_env()
    engine = create_db_engine(settings.resolved_database_url)
    try:
        if settings.migrate_on_start:  # otherwise a migration step ran before the services
            await asyncio.to_thread(upgrade, engine)
    except BaseException:
        engine.dispose()
        raise
    sessions = session_factory(engine)
    store = FusionStore(sessions, await asyncio.to_thread(KeyRing.from_settings, sessions, settings))
    events = EventHub(bus)
    keys = KeyStore(sessions)
    audit = AuditTrail(sessions)
    hooks = WebhookStore(sessions, allow_private=settings.fusion.allow_private_targets)
    policies = TenantPolicyStore(sessions, settings.fusion.default_policy)
    services = [
        events,
        WebhookDispatcher(bus, hooks, settings.fusion),
        # The gateway takes Greenhouse's orders; the callback once scored is sent from here.
        GreenhouseNotifier(bus, GreenhouseStore(sessions), allow_private=settings.fusion.allow_private_targets),
        # Invitations the gateway queued at send_test are emailed from here, beside the callbacks.
        InvitationMailer(bus, InvitationStore(sessions), settings.smtp),
        FusionService(bus, store, settings, policies, audit=audit),
        # The database's part of the purge; the gateways purge their own folders.
        RetentionJob(sessions, settings.retention, audit=audit),
    ]
    if grpc_port is not None:  # last: started once its backends are, stopped before them
        services.append(GrpcServer(ScoringServicer(keys, store=store, events=events, audit=audit), settings.http_host, grpc_port))
    return ServiceParts(
        services=services,
        routers=[create_router(store, settings, keys, events, audit), create_webhook_router(hooks, keys, audit),
                 create_demographics_router(DemographicsStore(sessions), keys, audit),
                 create_tenant_settings_router(policies, keys),
                 create_override_router(OverrideStore(sessions), keys, audit),
                 create_audit_log_router(audit, keys),
                 # The reviewers' dashboard; its answers' videos come from the gateway (docs/dashboard.md).
                 create_dashboard_router(keys, settings.fusion.frameworks_dir)],
        close=[engine.dispose],
    )


if __name__ == "__main__":
    main(
        "fusion",
        build,
        description=(
            "Poise fusion: joins vision, audio and NLP results per answer, scores them, stores "
            "scorecards and serves GET /v1/interviews/{id}/scorecard and the reviewers' dashboard at /dashboard/. "
            "POISE_GRPC_PORT=<port> also serves "
            "the gRPC API's read and event methods (poise.v1.ScoringService)."
        ),
        reads=["home", "database_url", "migrate_on_start", "fusion", "nlp.min_words_for_scoring", "smtp",
               "master_keys", "retention"],
    )
