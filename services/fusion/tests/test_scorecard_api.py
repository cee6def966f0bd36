"""The scorecard API over a real SQLite store: 404, 202, 200 and 422 as scoring progresses."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.messages import Envelope, InterviewOpened, Question
from poise_common.settings import PoiseSettings
from poise_common.auth import KeyStore
from poise_fusion.api import InterviewPage, create_router
from poise_fusion.store import FusionStore

SCORECARD = {
    "interview_id": "iv1",
    "role": "generic",
    "model_version": "generic@1.0+norms",
    "competencies": [{"name": "communication_clarity", "score": 71.5, "band": "strong"}],
    "answers": [],
    "warnings": [],
}


@pytest.fixture()
def store(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    store = FusionStore(session_factory(engine))
    store.keys = KeyStore(store.sessions)
    yield store
    engine.dispose()


def opened(interview_id: str, tenant: str = "local") -> Envelope:
    return Envelope(
        interview_id=interview_id, tenant=tenant, stream="control", seq=0,
        payload=InterviewOpened(role="generic", questions=[Question(question_id="q1", text="Why us?")]),
    )


def get_all(
    store: FusionStore, paths: list[str], tenant: str = "local", scopes: tuple[str, ...] = ("scores:read",),
    key: str | None = None,
) -> list[httpx.Response]:
    app = FastAPI()
    app.include_router(create_router(store, PoiseSettings(), store.keys))
    key = key if key is not None else store.keys.create(tenant, list(scopes))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://fusion", headers=headers) as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(scenario())


def test_unknown_interview_is_404(store):
    (response,) = get_all(store, ["/v1/interviews/nope/scorecard"])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_processing_then_scored(store):
    store.apply(opened("iv1"))
    (processing,) = get_all(store, ["/v1/interviews/iv1/scorecard"])
    assert store.save_scorecard("iv1", "local", "generic@1.0+norms", SCORECARD)
    (scored,) = get_all(store, ["/v1/interviews/iv1/scorecard"])
    assert processing.status_code == 202 and processing.json() == {"status": "processing"}
    # Served with the review fields: no override yet, so the final score is the model's.
    unreviewed = {**SCORECARD, "reviewed": False,
                  "competencies": [{**c, "final_score": c["score"], "override": None} for c in SCORECARD["competencies"]]}
    assert scored.status_code == 200 and scored.json() == unreviewed


def test_failed_interview_is_422_with_why(store):
    store.apply(opened("iv2"))
    store.apply(opened("iv2b"))
    unknown_role = "unknown role 'astronaut'; known roles: generic, sales-development-rep"
    no_consent = "the us-il policy needs the candidate's consent before analysis, and none was recorded"
    store.discard_interview("iv2", "local", unknown_role)
    store.discard_interview("iv2b", "local", no_consent)
    failed, refused = get_all(store, ["/v1/interviews/iv2/scorecard", "/v1/interviews/iv2b/scorecard"])
    assert failed.status_code == 422
    assert failed.json() == {"status": "failed", "error": {"code": "not_scorable", "message": unknown_role}}
    assert refused.status_code == 422
    assert refused.json() == {"status": "failed", "error": {"code": "consent_required", "message": no_consent}}


def test_another_tenants_interview_does_not_exist(store):
    store.apply(opened("iv3", tenant="acme"))
    store.save_scorecard("iv3", "acme", "generic@1.0+norms", SCORECARD)
    (theirs,) = get_all(store, ["/v1/interviews/iv3/scorecard"], tenant="acme")
    (ours,) = get_all(store, ["/v1/interviews/iv3/scorecard"], tenant="local")
    assert theirs.status_code == 200
    assert ours.status_code == 404


def test_overlong_ids_are_refused_before_the_database(store):
    (response,) = get_all(store, [f"/v1/interviews/{'x' * 65}/scorecard"])
    assert response.status_code == 422


def test_no_key_bad_key_revoked_key_and_missing_scope(store):
    store.apply(opened("iv4"))
    (none,) = get_all(store, ["/v1/interviews/iv4/scorecard"], key="")
    (bad,) = get_all(store, ["/v1/interviews/iv4/scorecard"], key="pk_0000_nope")
    key = store.keys.create("local", ["scores:read"])
    store.keys.revoke(key.split("_")[1])
    (revoked,) = get_all(store, ["/v1/interviews/iv4/scorecard"], key=key)
    (writer,) = get_all(store, ["/v1/interviews/iv4/scorecard"], scopes=("interviews:write",))
    (admin,) = get_all(store, ["/v1/interviews/iv4/scorecard"], scopes=("admin",))
    assert none.status_code == bad.status_code == revoked.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer"
    assert writer.status_code == 403
    assert admin.status_code == 202


def test_list_is_per_tenant_filtered_and_paged(store):
    for n in range(5):
        store.apply(opened(f"mine{n}"))
    store.apply(opened("theirs", tenant="acme"))
    store.save_scorecard("mine0", "local", "generic@1.0+norms", SCORECARD)
    first, scored = get_all(store, ["/v1/interviews?limit=3", "/v1/interviews?status=scored"])
    page = first.json()
    assert [i["interview_id"] for i in page["items"]] == ["mine4", "mine3", "mine2"]
    (second,) = get_all(store, [f"/v1/interviews?limit=3&cursor={page['next_cursor']}"])
    assert [i["interview_id"] for i in second.json()["items"]] == ["mine1", "mine0"]
    assert second.json()["next_cursor"] is None
    assert [i["interview_id"] for i in scored.json()["items"]] == ["mine0"]
    (bad,) = get_all(store, ["/v1/interviews?status=nonsense"])
    assert bad.status_code == 422


def test_paging_keeps_interviews_that_share_a_creation_time(store):
    from sqlalchemy import update

    from poise_common.db.models import Interview

    for n in range(7):
        store.apply(opened(f"same{n}"))
    with store.sessions.begin() as session:  # created in the same instant
        session.execute(update(Interview).values(created_at=1_700_000_000.0))
    seen, cursor = [], ""
    for _ in range(5):
        (page,) = get_all(store, [f"/v1/interviews?limit=3{cursor}"])
        assert page.status_code == 200, page.text
        seen += [i["interview_id"] for i in page.json()["items"]]
        if page.json()["next_cursor"] is None:
            break
        cursor = f"&cursor={page.json()['next_cursor']}"
    assert seen == [f"same{n}" for n in range(7)]  # each once, ties ordered by id
    bad, forged = get_all(store, ["/v1/interviews?cursor=nonsense", "/v1/interviews?cursor=djE6MS4wOng="])
    assert bad.status_code == forged.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_cursor"


def pages(store: FusionStore, query: str, tenant: str = "local") -> list[dict]:
    """Every page of ``GET /v1/interviews?{query}``, following next_cursor until it is null."""
    found, cursor = [], ""
    while True:
        (page,) = get_all(store, [f"/v1/interviews?{query}{cursor}"], tenant=tenant)
        assert page.status_code == 200, page.text
        InterviewPage.model_validate_json(page.text, strict=True)  # what the OpenAPI document says it is
        found.append(page.json())
        if page.json()["next_cursor"] is None:
            return found
        assert len(found) < 20, "the cursor never ended"
        cursor = f"&cursor={page.json()['next_cursor']}"


def test_a_full_last_page_has_no_next_cursor(store):
    for n in range(6):
        store.apply(opened(f"iv{n}"))
    listed = pages(store, "limit=3")
    assert [[i["interview_id"] for i in page["items"]] for page in listed] == [["iv5", "iv4", "iv3"],
                                                                             ["iv2", "iv1", "iv0"]]
    (exact,) = get_all(store, ["/v1/interviews?limit=6"])
    assert len(exact.json()["items"]) == 6 and exact.json()["next_cursor"] is None
    (short,) = get_all(store, ["/v1/interviews?limit=5"])
    assert len(short.json()["items"]) == 5 and short.json()["next_cursor"] is not None


def test_failed_interviews_are_listed_in_place_per_tenant_and_not_once_erased(store):
    from sqlalchemy import update

    from poise_common.db.models import Interview
    from poise_fusion.erasure import erase_rows

    for n in range(5):
        store.apply(opened(f"iv{n}"))
    store.apply(opened("theirs", tenant="acme"))
    with store.sessions.begin() as session:  # opened a second apart, oldest first
        for n in range(5):
            session.execute(update(Interview).where(Interview.id == f"iv{n}").values(created_at=1_700_000_000.0 + n))
    store.save_scorecard("iv0", "local", "generic@1.0+norms", SCORECARD)
    for interview_id in ("iv1", "iv3", "iv4"):
        store.discard_interview(interview_id, "local", "unknown role 'astronaut'")
    store.discard_interview("theirs", "acme", "unknown role 'astronaut'")
    with store.sessions.begin() as session:
        erase_rows(session, "local", ["iv4"], tombstone=True)

    everything = [i for page in pages(store, "limit=2") for i in page["items"]]
    # Where they stood when they were opened: failing does not move them.
    assert [(i["interview_id"], i["status"]) for i in everything] == [
        ("iv3", "failed"), ("iv2", "processing"), ("iv1", "failed"), ("iv0", "scored")]
    assert everything[0] == {"interview_id": "iv3", "role": None, "status": "failed", "answer_count": None,
                             "created_at": 1_700_000_003.0, "scored_at": None}
    failed = [[i["interview_id"] for i in page["items"]] for page in pages(store, "status=failed&limit=1")]
    assert failed == [["iv3"], ["iv1"]]
    assert [i["interview_id"] for i in pages(store, "status=failed", tenant="acme")[0]["items"]] == ["theirs"]
    # A failed interview keeps no role, so a role filter leaves it out.
    assert [i["interview_id"] for i in pages(store, "role=generic")[0]["items"]] == ["iv2", "iv0"]
    assert pages(store, "status=failed&role=generic")[0]["items"] == []
