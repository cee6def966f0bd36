"""Answers' media encrypted at rest on the gateway's disk; clear copies exist only while read.

An uploaded answer is encrypted as it streams in (the tenant's data key, chunked AES-GCM: see
``poise_common.crypto``), bound to its interview and file name. Probing and publishing need a
file that FFmpeg can seek in, so each gets a decrypted copy in a private folder (mode 0700)
under ``work_dir``, beside the media rather than in the system's temporary folder (which may
be memory, and answers reach 2 GiB), deleted as soon as the reader is done; a copy a dead
process left behind is deleted at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from poise_common.audit_trail import record_access
from poise_common.crypto import KeyRing, StreamEncryptor

if TYPE_CHECKING:
    from poise_common.audit_trail import AuditTrail


def media_aad(interview_id: str, name: str) -> bytes:
    """What a media file's encryption is bound to: its interview and its name (without suffix)."""
    return f"poise media\n{interview_id}\n{name}".encode()


class MediaVault:
    """Encrypts answers for the upload desk and lends out clear copies of them."""

    def __init__(self, keys: KeyRing, work_dir: Path, audit: AuditTrail | None = None) -> None:
        self.keys = keys
        self.work_dir = work_dir
        self.audit = audit

    def prepare(self) -> None:
        """Create the private work folder and delete every clear copy left in it."""
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.work_dir, 0o700)
        for leftover in self.work_dir.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def encryptor(self, tenant: str, interview_id: str, name: str) -> StreamEncryptor:
        return self.keys.stream_encryptor(tenant, media_aad(interview_id, name))

    @contextlib.asynccontextmanager
    async def clear_copy(self, path: Path, tenant: str, interview_id: str, purpose: str) -> AsyncIterator[Path]:
        """A decrypted copy of the media file ``path`` for as long as the block runs."""
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="clear-", dir=self.work_dir))  # 0700
        try:
            target = folder / "answer"  # a name that tells nothing about whose answer it is
            await asyncio.to_thread(self._decrypt, path, target, tenant, interview_id)
            await record_access(self.audit, tenant=tenant, actor="system", action="media.read",
                                interview_id=interview_id, detail={"purpose": purpose})
            yield target
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)

    def _decrypt(self, source: Path, target: Path, tenant: str, interview_id: str) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as sink:
            self.keys.decrypt_file(tenant, source, sink, media_aad(interview_id, source.name.removesuffix(".media")))
