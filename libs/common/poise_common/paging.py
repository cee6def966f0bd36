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


def page_of(rows: list[dict], limit: int) -> tuple[list[dict], str | None]:
    """The page of at most ``limit`` items from ``rows`` (fetched as ``limit + 1``), and the cursor
    after its last item; None when nothing follows, so a full last page is not taken for a middle one."""
    items = rows[:limit]
    if len(rows) <= limit:
        return items, None
    return items, Cursor(items[-1]["created_at"], items[-1]["interview_id"]).encode()
