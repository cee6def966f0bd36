"""``python -m poise_gateway``: the gateway as its own process (the upload API)."""

from __future__ import annotations

import asyncio
import functools

from prometheus_client import CollectorRegistry

from poise_common.bus import Bus
from poise_common.runtime import ServiceParts, main
from poise_common.settings import PoiseSettings


async def build(settings: PoiseSettings, bus: Bus, registry: CollectorRegistry) -> ServiceParts:
    """The upload desk (media under POISE_HOME/media) publishing through a Gateway on ``bus``, and
    the Greenhouse partner routes (they open interviews here; fusion sends their callbacks);
    with POISE_GRPC_PORT set, also the gRPC API's upload methods on that port."""
    from poise_common.audit_trail import AuditTrail
    from poise_common.auth import KeyStore
    from poise_common.crypto import KeyRing
    from poise_common.db.engine import create_db_engine, session_factory, upgrade
    from poise_common.grpc_api.server import GrpcServer, ScoringServicer, port_from_env
    from poise_fusion.erasure import CandidateIndex, Eraser, create_erasure_router
    from poise_fusion.framework import get_framework
    from poise_fusion.greenhouse import GreenhouseStore, create_greenhouse_router
    from poise_fusion.notices import create_notice_router
    from poise_fusion.policy import TenantPolicyStore
    from poise_fusion.retention import RetentionJob
    from poise_fusion.store import FusionStore
    from poise_gateway.api import NewInterview, UploadDesk, create_router
    from poise_gateway.candidate import InvitationSigner, create_candidate_router
    from poise_gateway.media_api import MediaLinks, create_media_router
    from poise_gateway.media_vault import MediaVault
    from poise_gateway.service import Gateway

    grpc_port = port_from_env()  # a bad value fails the start before anything is opened
    # Greenhouse lists the frameworks as tests: a broken folder fails the start, not list_tests.
    get_framework(settings.fusion.default_role, settings.fusion.frameworks_dir)
    # API keys live in the database; the gateway reads them to know the caller's tenant.
    engine = create_db_engine(settings.resolved_database_url)
    try:
        if settings.migrate_on_start:  # otherwise a migration step ran before the services
            await asyncio.to_thread(upgrade, engine)
    except BaseException:
        engine.dispose()
        raise

    sessions = session_factory(engine)
    policies = TenantPolicyStore(sessions, settings.fusion.default_policy)
    audit = AuditTrail(sessions)
    data_keys = await asyncio.to_thread(KeyRing.from_settings, sessions, settings)
    candidates = CandidateIndex(sessions, data_keys)
    # A us-il tenant's interview without the candidate's consent is refused at complete.
    desk = UploadDesk(
        settings.media_dir, Gateway(bus, settings.gateway), settings.gateway,
        default_role=settings.fusion.default_role, policies=policies,
        vault=MediaVault(data_keys, settings.media_dir / ".clear", audit), candidates=candidates,
        frameworks_dir=settings.fusion.frameworks_dir,
    )
    eraser = Eraser(sessions, candidates, desk, audit)
    await asyncio.to_thread(desk.prepare)  # an unwritable media folder fails the start
    keys = KeyStore(sessions)

    async def open_interview(role: str, questions: list[dict], tenant: str) -> str:
        return await desk.create(NewInterview(role=role, questions=questions), tenant)

    # test_status reads the scorecards fusion stored in the same database.
    # Candidates' links are made and checked here: their page uploads to this desk.
    signer = await asyncio.to_thread(InvitationSigner.from_settings, settings)
    public_base_url = settings.public_base_url(settings.gateway.port)
    greenhouse = create_greenhouse_router(
        GreenhouseStore(sessions), FusionStore(sessions, data_keys), keys, open_interview,
        frameworks_dir=settings.fusion.frameworks_dir, public_base_url=public_base_url,
        invitation_link=functools.partial(signer.link, public_base_url), discard_interview=desk.erase,
        email_invitations=bool(settings.smtp.url), allow_private_targets=settings.fusion.allow_private_targets,
        audit=audit,
    )
    # This gateway's folders: expired, never completed, or erased through another replica.
    services = [RetentionJob(sessions, settings.retention, database=False, media=desk, audit=audit)]
    if grpc_port is not None:
        services.append(GrpcServer(ScoringServicer(keys, desk=desk, audit=audit, eraser=eraser), settings.http_host,
                                   grpc_port))
    return ServiceParts(services=services,
                        routers=[create_router(desk, settings, keys, audit), greenhouse,
                                 # Reviewers play answers back here, where the media is kept.
                                 create_media_router(desk, keys, MediaLinks.from_settings(settings), audit),
                                 create_erasure_router(eraser, keys),
                                 create_candidate_router(desk, signer, keys, public_base_url, audit),
                                 # The candidate page's notices are served where the page is.
                                 create_notice_router(policies, keys, frameworks_dir=settings.fusion.frameworks_dir,
                                                      default_role=settings.fusion.default_role)],
                        close=[engine.dispose])


if __name__ == "__main__":
    main(
        "gateway",
        build,
        description=(
            "Poise gateway: the upload API. POST /v1/interviews, PUT the raw video of each answer to "
            "/v1/interviews/{id}/answers/{question_id}, then POST /v1/interviews/{id}/complete to publish; "
            "reviewers play answers back from GET /v1/interviews/{id}/answers/{question_id}/media. "
            "Also the Greenhouse Assessment Partner routes under /ats/greenhouse/, and erasure requests "
            "(DELETE /v1/candidates/{ref}). "
            "POISE_GRPC_PORT=<port> also serves the gRPC API's upload methods (poise.v1.ScoringService)."
        ),
        reads=["home", "database_url", "migrate_on_start", "public_url", "invitation_secret",
               "invitation_valid_days", "smtp.url", "gateway", "fusion.default_role",
               "fusion.frameworks_dir", "fusion.default_policy", "fusion.allow_private_targets", "master_keys",
               "retention"],
    )
