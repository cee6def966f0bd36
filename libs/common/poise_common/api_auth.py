"""``Authorization: Bearer <api key>`` for FastAPI routes, with scopes.

The key dependency declares the HTTP bearer scheme, so the OpenAPI document names it on every
operation that takes a key and generated clients (and /docs "Authorize") send it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from poise_common.auth import KeyStore, Principal

# auto_error off: a missing key is answered by ``requires`` in the API's error shape, not by FastAPI.
BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def requires(keys: KeyStore, scope: str) -> Callable:
    """A dependency returning the caller's Principal: 401 without a valid key, 403 without ``scope``."""

    async def principal(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None
    ) -> Principal:
        # FastAPI passes the credentials; a route with another way in (a media link) calls this
        # dependency itself with the request alone.
        token = credentials.credentials if credentials is not None else bearer_token(request)
        found = await asyncio.to_thread(keys.verify, token) if token else None
        if found is None:
            raise HTTPException(
                401,
                detail={"code": "unauthenticated", "message": "a valid API key is required (Authorization: Bearer <key>)"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not found.may(scope):
            raise HTTPException(403, detail={"code": "forbidden", "message": f"this key lacks the {scope!r} scope"})
        return found

    return principal
