"""Page cursors for interview lists (REST ``cursor`` and gRPC ``page_token``).

A cursor names the last row of a page by its sort key, (created_at, interview id), so the next
page starts right after it even when several interviews share a creation time. It is opaque to
clients: base64 of a versioned text, refused when this server did not issue it.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    created_at: float
    interview_id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"v2:{self.created_at!r}:{self.interview_id}".encode()).decode()


def decode_cursor(token: str | None) -> Cursor | None:
    """The cursor in ``token`` (None for an empty one); BadCursor for one this server did not issue."""
    if not token:
        return None
    try:
        version, created_at, interview_id = base64.urlsafe_b64decode(token.encode()).decode().split(":", 2)
        when = float(created_at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("the cursor is not one this server issued") from None
    if version != "v2" or not math.isfinite(when) or not interview_id:
        raise BadCursor("the cursor is not one this server issued")
    return Cursor(when, interview_id)


def next_cursor(items: list[dict], limit: int) -> str | None:
    """The cursor after a full page's last item; None when the page was the last."""
    if len(items) < limit or not items:
        return None
    return Cursor(items[-1]["created_at"], items[-1]["interview_id"]).encode()
