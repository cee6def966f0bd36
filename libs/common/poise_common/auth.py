"""Tenants' API keys: creation, hashed storage, verification, and the FastAPI dependency.

A key reads ``pk_<id>_<secret>``. The id finds the row; only the SHA-256 of the secret is
stored (the secret is 32 random bytes, so a fast hash is enough: there is nothing to guess),
and it is compared in constant time. A key belongs to one tenant and carries scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from poise_common.db.models import ApiKey

SCOPES = ("interviews:write", "scores:read", "scores:review", "candidates:erase", "admin")
_CACHE_S = 5.0  # a revoked key stops working within this many seconds on every replica


class AuthError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant and what its key may do."""

    tenant: str
    scopes: frozenset[str]
    key_id: str

    def may(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    scopes: list[str]
    name: str | None
    created_at: float
    revoked: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def create(self, tenant: str, scopes: list[str], name: str | None = None) -> str:
        """Make a key and return it; this is the only time the whole key exists outside the caller."""
        if not tenant or len(tenant) > 64 or not tenant.replace("-", "").replace("_", "").isalnum():
            raise AuthError("a tenant name is 1-64 letters, digits, '-' or '_'")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise AuthError(f"scopes must be among {', '.join(SCOPES)} (got {', '.join(scopes) or 'none'})")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self.sessions.begin() as session:
            session.add(ApiKey(id=key_id, tenant=tenant, secret_sha256=_digest(secret),
                               scopes=sorted(set(scopes)), name=name))
        return f"pk_{key_id}_{secret}"

    def verify(self, token: str) -> Principal | None:
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and now - cached[0] < _CACHE_S:
            return cached[1]
        principal = self._lookup(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now, principal)
        return principal

    def _lookup(self, token: str) -> Principal | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "pk" or not parts[1] or not parts[2]:
            return None
        with self.sessions() as session:
            row = session.get(ApiKey, parts[1])
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.secret_sha256, _digest(parts[2])):
                return None
            return Principal(tenant=row.tenant, scopes=frozenset(row.scopes), key_id=row.id)

    def list(self, tenant: str | None = None) -> list[KeyInfo]:
        with self.sessions() as session:
            query = select(ApiKey).order_by(ApiKey.created_at)
            if tenant:
                query = query.where(ApiKey.tenant == tenant)
            return [
                KeyInfo(k.id, k.tenant, list(k.scopes), k.name, k.created_at, k.revoked_at is not None)
                for k in session.scalars(query)
            ]

    def revoke(self, key_id: str) -> bool:
        with self.sessions.begin() as session:
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = time.time()
        self._cache.clear()
        return True
