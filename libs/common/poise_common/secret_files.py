"""Secrets a single-host deployment generates once and keeps in a file of its own (mode 0600)."""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from pathlib import Path


def kept_secret(path: Path) -> bytes:
    """The secret kept at ``path`` (64 hex characters), created once; safe against a racing process."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}-{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
            fh.flush()
            os.fsync(fh.fileno())
        # A hard link never replaces: a process that lost the race reads the winner's secret.
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.read_bytes().strip()
