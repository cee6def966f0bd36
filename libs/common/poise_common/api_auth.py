"""``Authorization: Bearer <api key>`` for FastAPI routes, with scopes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import HTTPException, Request

from poise_common.auth import KeyStore, Principal


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def requires(keys: KeyStore, scope: str) -> Callable:
    """A dependency returning the caller's Principal: 401 without a valid key, 403 without ``scope``."""

    async def principal(request: Request) -> Principal:
        token = bearer_token(request)
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
