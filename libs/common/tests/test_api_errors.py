"""The API's one error shape on a service process's app (``runtime.create_app``): what the
framework answers itself (validation, unknown routes and methods, authentication) comes back as
``{"error": {"code", "message"}}``, and the OpenAPI document declares that shape and the bearer key."""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated dependencies,
# made inside service_app, as objects.

import asyncio
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, Query, Request
from prometheus_client import CollectorRegistry

from poise_common.api_auth import requires
from poise_common.auth import KeyStore, Principal
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.runtime import Readiness, create_app

ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture()
def keys(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    yield KeyStore(session_factory(engine))
    engine.dispose()


def service_app(keys: KeyStore):
    """A ready service app with one keyed route, and one that reads the key itself (as a media link route does)."""
    registry = CollectorRegistry()
    readiness = Readiness(registry, "test")
    app = create_app("test", registry, readiness)
    router = APIRouter(prefix="/v1")
    reader = requires(keys, "scores:read")

    @router.get("/things")
    async def things(caller: Annotated[Principal, Depends(reader)],
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
        return {"tenant": caller.tenant, "limit": limit}

    @router.get("/linked")
    async def linked(request: Request) -> dict:
        return {"tenant": (await reader(request)).tenant}

    app.include_router(router)
    readiness.set("ready")
    return app


def call(app, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            return [await client.request(method, path, headers=headers) for method, path, headers in requests]

    return asyncio.run(scenario())


def test_framework_errors_have_the_apis_one_shape(keys):
    app = service_app(keys)
    key = {"Authorization": f"Bearer {keys.create('acme', ['scores:read'])}"}
    writer = {"Authorization": f"Bearer {keys.create('acme', ['interviews:write'])}"}
    ok, linked, unknown, method, invalid, none, basic, scope = call(
        app, ("GET", "/v1/things?limit=7", key), ("GET", "/v1/linked", key), ("GET", "/v1/nothing", key),
        ("DELETE", "/v1/things", key), ("GET", "/v1/things?limit=jane.doe@example.com", key),
        ("GET", "/v1/things", {}), ("GET", "/v1/things", {"Authorization": "Basic a2V5Og=="}),
        ("GET", "/v1/things", writer),
    )
    assert ok.json() == {"tenant": "acme", "limit": 7} and linked.json() == {"tenant": "acme"}
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert method.status_code == 405 and method.json()["error"]["code"] == "method_not_allowed"
    assert method.headers["allow"] == "GET"
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_request"
    message = invalid.json()["error"]["message"]
    assert message.startswith("query.limit: ") and "jane.doe" not in message  # where, never the value sent
    assert none.status_code == basic.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert none.json()["error"]["code"] == basic.json()["error"]["code"] == "unauthenticated"
    assert scope.status_code == 403 and scope.json()["error"]["code"] == "forbidden"
    for response in (unknown, method, invalid, none, basic, scope):
        assert set(response.json()) == {"error"} and set(response.json()["error"]) == {"code", "message"}


def test_the_document_declares_the_bearer_key_and_the_error_shape(keys):
    document = service_app(keys).openapi()
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`."}
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error"] and set(schemas["ErrorDetail"]["required"]) == {"code", "message"}
    assert "HTTPValidationError" not in schemas and "HTTPValidationError" not in str(document["paths"])
    keyed = document["paths"]["/v1/things"]["get"]
    assert keyed["security"] == [{"HTTPBearer": []}]
    assert {s: r["content"]["application/json"]["schema"] for s, r in keyed["responses"].items() if s != "200"} == {
        "401": ERROR, "403": ERROR, "422": ERROR, "503": ERROR}
    # A route that reads the key itself declares no scheme, so neither 401 nor 403.
    linked = document["paths"]["/v1/linked"]["get"]
    assert "security" not in linked and set(linked["responses"]) == {"200", "503"}
