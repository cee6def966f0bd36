"""Reviewers play answers back: ``GET /v1/interviews/{id}/answers/{question_id}/media``, with ranges.

Served where the media is kept: the gateway (and ``poise serve``). In a distributed deployment
an ingress routes ``/v1/interviews/*/answers/*`` (uploads, media, media links) to the gateway
and the rest of ``/v1`` to fusion, so the dashboard reaches both on one origin.

Who may read: a key with ``scores:read`` of the interview's tenant (``Authorization: Bearer``),
or the holder of a media link: ``POST .../media/link`` (same key) returns a token for that one
answer, valid :data:`LINK_VALID_S`, to pass as ``?t=``, because a ``<video>`` element cannot
send an Authorization header. The token is HMAC-SHA256 under a key derived from the invitation
secret (so every gateway replica that checks candidate links checks media links too), over the
interview, question, tenant, issuing key id and expiry; it never holds the API key itself.

``Range: bytes=...`` (one range) is answered 206 so a player can seek; several ranges get the
whole file (allowed by RFC 9110). Media encrypted at rest is decrypted while it is sent, through
the crypto module's stream decryptor; its chunks are sealed in sequence, so a range that starts
far in is decrypted from the start and the part before it dropped (AES-GCM runs at about a GiB
per second, so a seek costs at most a second or two on the largest answers).
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated
# dependencies as objects, and they are made inside create_media_router.

import asyncio
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from poise_common.api_auth import requires
from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_common.crypto import CryptoError, StreamDecryptor
from poise_common.settings import PoiseSettings
from poise_gateway.api import ApiError, ErrorRoute, StoredAnswer, UploadDesk
from poise_gateway.candidate import b64url, invitation_secret, unb64url
from poise_gateway.media_vault import media_aad

log = logging.getLogger(__name__)

READ_SCOPE = "scores:read"
# Long enough to watch the longest answer (20 minutes) without the player asking for a new link.
LINK_VALID_S = 1800
_LINK_KEY_LABEL = b"poise media link key v1"
_SIGNED_PREFIX = b"poise-media-link/v1\n"
# Up to 18 digits: more than any file holds, and never a number too long for int().
_RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")
_READ_BYTES = 1 << 20
_RESPONSES = {
    206: {"description": "The requested range of the media."},
    403: {"description": "A media link that is invalid or expired (code link_invalid or link_expired)."},
    404: {"description": "No such interview or question, another tenant's, or no media kept (code media_gone)."},
    416: {"description": "The range lies outside the media."},
}


# -- media links -------------------------------------------------------------------------
class MediaLinks:
    """Makes and checks the short-lived tokens that let a video element fetch one answer."""

    def __init__(self, secret: bytes, valid_s: float = LINK_VALID_S) -> None:
        if len(secret) < 16:
            raise ValueError("the media link secret must be at least 16 bytes")
        # A key of its own: a media token can never pass for a candidate's invitation token.
        self._key = hmac.new(secret, _LINK_KEY_LABEL, hashlib.sha256).digest()
        self.valid_s = valid_s

    @classmethod
    def from_settings(cls, settings: PoiseSettings) -> "MediaLinks":
        """Keyed from the invitation secret (configured, or the one kept under POISE_HOME)."""
        return cls(invitation_secret(settings))

    def _signature(self, interview_id: str, question_id: str, holder: str, expires: int) -> str:
        signed = _SIGNED_PREFIX + json.dumps([interview_id, question_id, holder, expires]).encode()
        return b64url(hmac.new(self._key, signed, hashlib.sha256).digest())

    def token(self, interview_id: str, question_id: str, caller: Principal, *, now: float | None = None
              ) -> tuple[str, int]:
        """A token for ``caller`` to read this answer's media, and when it expires (Unix seconds)."""
        expires = int((time.time() if now is None else now) + self.valid_s)
        holder = b64url(json.dumps([caller.tenant, caller.key_id]).encode())
        return f"{expires}.{holder}.{self._signature(interview_id, question_id, holder, expires)}", expires

    def holder(self, interview_id: str, question_id: str, token: str, *, now: float | None = None) -> Principal:
        """Who the token was made for (a reader of its tenant); ApiError 403 when it does not open this answer."""
        try:
            expires_text, holder, signature = token.split(".")
            expires = int(expires_text)
            tenant, key_id = json.loads(unb64url(holder))
        except (ValueError, TypeError, binascii.Error):
            raise ApiError(403, "link_invalid", "this media link is not valid") from None
        expected = self._signature(interview_id, question_id, holder, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode()):  # bytes: any text the caller sent
            raise ApiError(403, "link_invalid", "this media link is not valid")
        if (time.time() if now is None else now) >= expires:
            raise ApiError(403, "link_expired", "this media link has expired; ask for a new one")
        return Principal(tenant=tenant, scopes=frozenset({READ_SCOPE}), key_id=key_id)


class MediaLink(BaseModel):
    token: str = Field(description="Pass as ?t= to GET .../media (for a <video> element, which cannot send headers).")
    expires_at: int = Field(description="When the token stops working (Unix seconds).")


# -- ranges and bytes --------------------------------------------------------------------
class RangeNotSatisfiable(ValueError):
    """A range outside the media: answered 416 with the media's size."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the media is {size} bytes long")
        self.size = size

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"code": "range_not_satisfiable", "message": str(self)}}, status_code=416,
                            headers={"Content-Range": f"bytes */{self.size}"})


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte a single ``Range`` header asks for; None for the whole file (no
    header, several ranges, or one this server does not read); RangeNotSatisfiable outside the file."""
    found = _RANGE.match((header or "").strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        if int(last) == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - int(last)), size - 1
    start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable(size)
    return start, end


def plaintext_range(path: Path, first: int, last: int, decryptor: StreamDecryptor | None,
                    block: int = _READ_BYTES) -> Iterator[bytes]:
    """Bytes ``first``..``last`` (inclusive) of the media as it was uploaded, read ``block`` bytes at a time."""
    with path.open("rb") as fh:
        if decryptor is None:
            fh.seek(first)
            remaining = last - first + 1
            while remaining > 0 and (piece := fh.read(min(block, remaining))):
                remaining -= len(piece)
                yield piece
            return
        position = 0  # of the plaintext decrypted so far
        while position <= last:
            sealed = fh.read(block)
            plain = decryptor.update(sealed) if sealed else decryptor.finalize()
            start, end = max(first - position, 0), min(last + 1 - position, len(plain))
            if start < end:
                yield plain[start:end]
            position += len(plain)
            if not sealed:
                return


def media_type(stored: StoredAnswer) -> str:
    container = str(stored.media.get("container", ""))
    if "webm" in container or "matroska" in container:
        return "video/webm"
    if "mp4" in container or "mov" in container:
        return "video/mp4"
    return "application/octet-stream"


# -- routes --------------------------------------------------------------------------------
def create_media_router(desk: UploadDesk, keys: KeyStore, links: MediaLinks, audit: AuditTrail | None = None
                        ) -> APIRouter:
    """The media routes over ``desk``'s folders. With ``audit``, each link handed out and each
    playback from the start (a range from byte 0) is recorded (``media.read``, by purpose)."""
    bearer = requires(keys, READ_SCOPE)
    Reader = Annotated[Principal, Depends(bearer)]

    async def viewer(request: Request, interview_id: str, question_id: str,
                     t: Annotated[str, Query(max_length=512, description="A media link token.")] = "") -> Principal:
        if t:
            return links.holder(interview_id, question_id, t)
        return await bearer(request)

    Viewer = Annotated[Principal, Depends(viewer)]
    router = APIRouter(prefix="/v1/interviews", tags=["media"], route_class=ErrorRoute)

    async def kept(interview_id: str, question_id: str, tenant: str) -> tuple[Path, StoredAnswer]:
        found = await asyncio.to_thread(desk.answer_media, interview_id, tenant, question_id)
        if found is None:
            raise ApiError(404, "media_gone", "no media is kept for this answer")
        return found

    async def record(caller: Principal, purpose: str, interview_id: str, question_id: str) -> None:
        await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action="media.read",
                            interview_id=interview_id,
                            detail={"via": "rest", "question_id": question_id, "purpose": purpose})

    @router.post("/{interview_id}/answers/{question_id}/media/link", responses=_RESPONSES)
    async def media_link(interview_id: str, question_id: str, caller: Reader) -> MediaLink:
        """A short-lived token to play this answer's video in a browser."""
        await kept(interview_id, question_id, caller.tenant)
        token, expires = links.token(interview_id, question_id, caller)
        await record(caller, "playback link", interview_id, question_id)
        return MediaLink(token=token, expires_at=expires)

    @router.get("/{interview_id}/answers/{question_id}/media", responses=_RESPONSES, response_class=StreamingResponse)
    async def media(interview_id: str, question_id: str, request: Request, caller: Viewer) -> Response:
        """The answer's video as uploaded; ``Range`` for part of it."""
        path, stored = await kept(interview_id, question_id, caller.tenant)
        size = int(stored.media["size_bytes"]) if stored.encrypted else path.stat().st_size
        try:
            wanted = byte_range(request.headers.get("range"), size)
        except RangeNotSatisfiable as exc:
            return exc.response()
        first, last = wanted or (0, size - 1)
        decryptor = None
        if stored.encrypted:
            if desk.vault is None:
                raise ApiError(500, "media_unreadable", "this answer is stored encrypted and no media vault is set up")
            decryptor = desk.vault.keys.stream_decryptor(
                caller.tenant, media_aad(interview_id, path.name.removesuffix(".media")))
        pieces = plaintext_range(path, first, last, decryptor)
        try:  # the first piece before any header: a key or file problem is an answer, not a cut-off body
            head = await asyncio.to_thread(next, pieces, b"")
        except (CryptoError, OSError) as exc:
            log.error("media unreadable", extra={"interview_id": interview_id, "error": type(exc).__name__})
            raise ApiError(500, "media_unreadable", "this answer's media cannot be read") from exc
        if first == 0:
            await record(caller, "playback", interview_id, question_id)
        headers = {
            "Accept-Ranges": "bytes", "Content-Length": str(last - first + 1), "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        }
        if wanted is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return StreamingResponse(chain([head], pieces), status_code=206 if wanted else 200,
                                 media_type=media_type(stored), headers=headers)

    return router
