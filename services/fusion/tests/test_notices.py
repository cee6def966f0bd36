"""Candidate notices over HTTP on a real SQLite store: the public text, a tenant's details with its key,
versions by content, and refusals."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_fusion.framework import get_framework
from poise_fusion.notices import create_notice_router
from poise_fusion.policy import DATA_KINDS, TenantPolicyStore

NOTICE = {
    "alternative_process_contact": "accommodations@acme.example",
    "retention": "Recordings 30 days, scorecards 1 year.",
    "audit_summary_url": "https://acme.example/ai-audit-2026",
}


@pytest.fixture()
def served(sessions):
    keys, policies = KeyStore(sessions), TenantPolicyStore(sessions, ttl_s=0)
    app = FastAPI()
    app.include_router(create_notice_router(policies, keys, frameworks_dir=None, default_role="generic"))

    def get(path: str, key: str | None = None, **params) -> httpx.Response:
        async def scenario() -> httpx.Response:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://poise") as client:
                return await client.get(path, headers=headers, params=params)

        return asyncio.run(scenario())

    return get, keys, policies


def test_the_illinois_notice_explains_the_analysis_from_the_framework(served):
    get, _, _ = served
    response = get("/v1/notices/us-il")
    assert response.status_code == 200
    document = response.json()
    text = document["text"]
    assert (document["profile"], document["role"], document["format"]) == ("us-il", "generic", "markdown")
    assert document["version"] == "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    assert document["tenant_notice"] is None
    framework = get_framework("generic")
    for competency in framework.competencies:
        assert f"**{competency.label}**" in text
        for behaviour in competency.behaviours:
            assert behaviour.name in text
    for kind in DATA_KINDS.values():
        assert kind in text
    assert "consent" in text and "30" in text and "820 ILCS 42" in text

    sales = get("/v1/notices/us-il", role="sales-development-rep").json()
    assert sales["role"] == "sales-development-rep" and sales["version"] != document["version"]
    for competency in get_framework("sales-development-rep").competencies:
        assert f"**{competency.label}**" in sales["text"]


def test_the_nyc_notice_is_generic_without_a_key_and_the_tenants_with_one(served):
    get, keys, policies = served
    policies.set("acme", "us-nyc", NOTICE)
    public = get("/v1/notices/us-nyc").json()
    assert public["tenant_notice"] is None
    assert "Local Law 144" in public["text"] and "10 business days" in public["text"]
    assert all(value not in public["text"] for value in NOTICE.values())

    acme = get("/v1/notices/us-nyc", keys.create("acme", ["scores:read"])).json()
    assert acme["tenant_notice"] == NOTICE
    assert all(value in acme["text"] for value in NOTICE.values())
    assert acme["version"] != public["version"]
    # Another tenant without a notice gets the generic wording, not acme's.
    globex = get("/v1/notices/us-nyc", keys.create("globex", ["interviews:write"])).json()
    assert globex["tenant_notice"] is None and globex["text"] == public["text"]


def test_refusals(served):
    get, _, _ = served
    bad_key = get("/v1/notices/us-nyc", "pk_nope_nope")
    assert bad_key.status_code == 401
    assert get("/v1/notices/eu").status_code == 422
    unknown = get("/v1/notices/us-il", role="astronaut")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_role"
