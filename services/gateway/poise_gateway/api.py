"""The gateway's upload API for the distributed deployment.

Flow: ``POST /v1/interviews`` with the questions -> ``PUT /v1/interviews/{id}/answers/{question_id}``
once per question, the raw request body being the video (any content type; multipart is not
accepted, so clients stream the file as it is) -> ``POST /v1/interviews/{id}/complete``.

Each interview is a folder under ``media_dir`` holding ``manifest.json`` (written atomically:
temp file, fsync, rename) and one media file per answer. An upload streams to a ``.part``
file, is renamed once whole, probed, and only then named in the manifest: a file the
manifest names is always complete and accepted, and a refused one is deleted at once.

Publishing happens inside the ``complete`` request, so a 202 means every message is on the
bus. If the process dies half-way the manifest still says "publishing" and keeps the media;
calling ``complete`` again publishes everything again, and consumers are idempotent on
(answer_id, stream, seq), so the repeat changes nothing downstream. A background task would
answer sooner, but it would need its own recovery at start and would turn a failure the
client sees (and retries) into one that only logs show. Published media stays, as stored, for
reviewers to play back (poise_gateway.media_api) until retention or an erasure removes the folder.

An answer that passed the probe can still fail its full decode while it is published (the
decoding limits are per second of media). Then what was published of the interview is
withdrawn (fusion drops it), the refused answer leaves the manifest and the interview is open
again: the client hears which question's answer to upload again, and completes once more.
The next publication uses new answer ids (``Manifest.attempt``), so nothing of the withdrawn
one that is still on its way can be mixed into it.

A bus that keeps no messages (the in-memory bus of ``poise serve``) loses what a killed
process had published. So a completed interview that fusion has not scored (nor failed) is
published again: by ``complete`` when this process did not publish it, and at start
(``prepare``) for every such interview.
"""

# No `from __future__ import annotations`: FastAPI must see the routes' Annotated
# dependencies as objects, and they are made inside create_router.

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from poise_common.api_auth import requires
from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_common.bus.spread_ids import SpreadIds
from poise_common.messages import Consent, Question
from poise_common.crypto import StreamEncryptor
from poise_common.settings import GatewaySettings, PoiseSettings
from poise_gateway.errors import MediaJobKilled, MediaRejected
from poise_gateway.probe import MediaInfo
from poise_gateway.sandbox import isolated_probe
from poise_gateway.service import AnswerUpload, Gateway

if TYPE_CHECKING:
    from poise_fusion.erasure import CandidateIndex
    from poise_fusion.policy import TenantPolicyStore
    from poise_gateway.media_vault import MediaVault

log = logging.getLogger(__name__)

MAX_QUESTIONS = 50
ROLE_PATTERN = r"^[a-z0-9-]{1,64}$"
# Question ids travel in URL paths: no slash, no control characters.
QUESTION_ID_PATTERN = r"^[^/\x00-\x1f]{1,128}$"
MANIFEST = "manifest.json"
_INTERVIEW_ID = re.compile(r"^[0-9a-f]{32}$")
# Chunks are gathered to this size before each write, so the loop hands the disk few, large writes.
_WRITE_BYTES = 1 << 20
# A partial upload untouched this long belongs to a dead process (a live one writes continuously).
_STALE_PARTIAL_S = 3600.0
# Consent given "in the future" by more than this is a wrong clock or a made-up time.
_CONSENT_CLOCK_SKEW_S = 300.0


# -- errors ----------------------------------------------------------------------------
class ApiError(Exception):
    """An error answer: ``{"error": {"code": ..., "message": ..., **details}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": self.code, "message": self.message, **self.details}}, status_code=self.status
        )


class ErrorRoute(APIRoute):
    """A route whose ``ApiError`` becomes its answer (a router cannot register exception handlers)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return exc.response()

        return route


def _unknown_interview() -> ApiError:
    return ApiError(404, "not_found", "no such interview")


# -- request and response bodies ---------------------------------------------------------
class QuestionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question_id: str = Field(pattern=QUESTION_ID_PATTERN, description="The caller's id of the question.")
    text: str = Field(max_length=4000, description="The question as the candidate saw it.")


class ConsentIn(Consent):
    """Consent as the API takes it: no unknown fields, and not given in the future."""

    model_config = ConfigDict(extra="forbid")

    given_at: Annotated[
        float,
        WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}),
    ] = Field(
        gt=0, allow_inf_nan=False,
        description="When the candidate consented: ISO-8601 with a time zone, or Unix seconds.",
    )

    @field_validator("given_at")
    @classmethod
    def _not_ahead(cls, given_at: float) -> float:
        if given_at > time.time() + _CONSENT_CLOCK_SKEW_S:
            raise ValueError("consent cannot be given in the future")
        return given_at


class NewInterview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(
        None, pattern=ROLE_PATTERN,
        description="Competency profile; unset means the default. An unknown one is refused (422 unknown_role).",
    )
    questions: list[QuestionIn] = Field(min_length=1, max_length=MAX_QUESTIONS)
    candidate_ref: str | None = Field(
        None, max_length=256, description="The caller's reference for the candidate; kept here, never published."
    )
    consent: ConsentIn | None = Field(
        None, description="The candidate's consent to analysis; a us-il tenant's interview cannot complete without it.",
    )

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, questions: list[QuestionIn]) -> list[QuestionIn]:
        ids = [q.question_id for q in questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique")
        return questions


class InterviewCreated(BaseModel):
    interview_id: str


class Codecs(BaseModel):
    video: str | None
    audio: str


class AnswerAccepted(BaseModel):
    """What the probe found in an accepted answer."""

    interview_id: str
    question_id: str
    size_bytes: int
    duration_s: float
    width: int | None
    height: int | None
    fps: float | None
    container: str
    codecs: Codecs

    @classmethod
    def of(cls, interview_id: str, question_id: str, info: MediaInfo) -> "AnswerAccepted":
        return cls(
            interview_id=interview_id, question_id=question_id, size_bytes=info.size_bytes,
            duration_s=info.duration_s, width=info.width, height=info.height, fps=info.fps,
            container=info.container, codecs=Codecs(video=info.video_codec, audio=info.audio_codec),
        )


class Processing(BaseModel):
    interview_id: str
    status: Literal["processing"] = "processing"


# -- the manifest ----------------------------------------------------------------------
class StoredAnswer(BaseModel):
    file: str | None = Field(description="Media file in the interview's folder; None if published before media was kept.")
    media: dict = Field(description="The probe's facts (MediaInfo fields).")
    encrypted: bool = Field(False, description="The file is encrypted with the tenant's data key (media_vault).")


class Manifest(BaseModel):
    """An interview's state on disk: its questions, accepted answers and publishing status."""

    interview_id: str
    tenant: str
    role: str
    candidate_ref: str | None = None
    questions: list[Question]
    consent: Consent | None = None
    answers: dict[str, StoredAnswer] = Field(default_factory=dict)
    status: Literal["open", "publishing", "completed"] = "open"
    attempt: int = Field(0, ge=0, description="How many publications were withdrawn: the next one's answer ids say it.")
    created_at: float
    completed_at: float | None = None

    def question_index(self, question_id: str) -> int:
        for index, question in enumerate(self.questions):
            if question.question_id == question_id:
                return index
        raise ApiError(404, "not_found", "the interview has no such question")

    def missing(self) -> list[str]:
        return [q.question_id for q in self.questions if q.question_id not in self.answers]

    def require_open(self) -> None:
        if self.status != "open":
            raise ApiError(409, "completed", "the interview was completed; its answers can no longer change")


# -- the desk ----------------------------------------------------------------------------
class UploadDesk:
    """Interviews being uploaded, one folder each under ``root``, published through ``gateway``.

    One gateway process owns a folder; a per-interview lock orders the manifest's changes.
    With ``policies``, a tenant whose policy needs consent cannot complete an interview without it;
    with ``vault``, answers are encrypted on disk; with ``candidates``, a candidate_ref is kept
    only as a keyed hash in the database (for erasure requests), not in the manifest, and that
    database (fusion's too) says which completed interviews were scored. Roles are checked
    against the frameworks in ``frameworks_dir`` (None: the bundled ones).
    """

    def __init__(
        self, root: Path, gateway: Gateway | None, limits: GatewaySettings, default_role: str,
        policies: "TenantPolicyStore | None" = None, vault: "MediaVault | None" = None,
        candidates: "CandidateIndex | None" = None, frameworks_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.frameworks_dir = frameworks_dir
        self.gateway = gateway  # None: a desk that only looks after its folders (`poise purge`)
        self.limits = limits
        self.default_role = default_role
        self.policies = policies
        self.vault = vault
        self.candidates = candidates
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._ids = SpreadIds(gateway.bus if gateway is not None else None)
        # Interviews this process published: what a bus that keeps no messages still has.
        self._published_here: set[str] = set()
        self._resuming: asyncio.Task | None = None
        try:  # the loop that prepare(), run in a thread, hands interviews to publish again
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    # Blocking helpers; the async methods call them through asyncio.to_thread.
    def prepare(self) -> None:
        """Create the media folder; delete what a dead process left (stale partial uploads, media of
        published interviews that no answer names, half-written manifests); on a bus that keeps no
        messages, publish again (in the background) the completed interviews never scored."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.vault is not None:
            self.vault.prepare()
        if self.gateway is not None:
            self.gateway.warm_up()
        stale = time.time() - _STALE_PARTIAL_S
        for folder in self.root.iterdir():
            if not _INTERVIEW_ID.match(folder.name) or not folder.is_dir():
                continue
            try:
                published = (manifest := self._load(folder)) is not None and manifest.status == "completed"
                kept = set() if manifest is None else {a.file for a in manifest.answers.values()}
            except ValueError:  # unreadable manifest: leave the folder to an operator
                continue
            for leftover in folder.iterdir():
                with contextlib.suppress(OSError):
                    if leftover.name.endswith((".part", ".tmp")) and leftover.stat().st_mtime < stale:
                        leftover.unlink()
                    elif published and leftover.name.endswith(".media") and leftover.name not in kept:
                        leftover.unlink()
        self._resume_lost()

    def _resume_lost(self) -> None:
        """Hand the completed interviews whose messages died with an earlier process to a task
        on the desk's loop, which publishes them again once the service runs."""
        if self.gateway is None or self.gateway.bus.keeps_messages or self._loop is None or self.candidates is None:
            return  # nothing was lost, or no loop to publish on, or no database that says what was scored
        lost = [m.interview_id for m in self._manifests() if self._messages_lost(m)]
        if lost:
            log.warning("completed interviews were never scored; publishing them again",
                        extra={"interviews": len(lost)})
            self._loop.call_soon_threadsafe(self._start_resuming, lost)

    def _manifests(self) -> Iterator[Manifest]:
        for interview_id in self.folder_ids():
            with contextlib.suppress(ValueError, OSError):  # unreadable: left to an operator
                if (manifest := self._load(self.root / interview_id)) is not None:
                    yield manifest

    def _start_resuming(self, interview_ids: list[str]) -> None:
        self._resuming = asyncio.get_running_loop().create_task(self._publish_again(interview_ids))

    async def _publish_again(self, interview_ids: list[str]) -> None:
        for interview_id in interview_ids:
            async with self._lock(interview_id):
                try:
                    manifest = await asyncio.to_thread(self._load, self.root / interview_id)
                    if manifest is None or not await asyncio.to_thread(self._messages_lost, manifest):
                        continue  # erased, or completed again through the API meanwhile
                    await self._publish_completed(manifest)
                except ApiError as exc:  # logged where it happened; the client's next complete retries
                    log.warning("publishing again failed", extra={"interview_id": interview_id, "code": exc.code})
                except (ValueError, OSError) as exc:  # unreadable now: the next interview still goes
                    log.error("publishing again failed", extra={"interview_id": interview_id,
                                                                "error": type(exc).__name__})

    def _messages_lost(self, manifest: Manifest) -> bool:
        """Whether the completed ``manifest``'s messages are gone before fusion finished with them:
        published by an earlier process, on a bus that keeps no messages, and neither scored nor
        failed. (Blocking: it reads the database.)"""
        if manifest.status != "completed" or manifest.interview_id in self._published_here:
            return False
        if self.gateway is None or self.gateway.bus.keeps_messages:
            return False
        return self._scoring_status(manifest.interview_id) not in ("scored", "failed")

    def _scoring_status(self, interview_id: str) -> str | None:
        """Fusion's status of the interview (processing, scored, failed); None when it holds nothing
        or this desk has no database. Fusion's tables are in the database the candidate index uses."""
        if self.candidates is None:
            return None
        from poise_fusion.store import FusionStore  # fusion's reading of its own tables

        found = FusionStore(self.candidates.sessions).interview_status(interview_id)
        return None if found is None else found[1]

    def _load(self, folder: Path) -> Manifest | None:
        try:
            return Manifest.model_validate_json((folder / MANIFEST).read_bytes())
        except FileNotFoundError:
            return None

    def _folder(self, interview_id: str) -> Path:
        # Only ids this desk made name folders, so a path parameter never walks the disk.
        if not _INTERVIEW_ID.match(interview_id):
            raise _unknown_interview()
        return self.root / interview_id

    def read(self, interview_id: str, tenant: str) -> Manifest:
        """The caller's interview; 404 (not_found) when it is unknown or another tenant's."""
        manifest = self._load(self._folder(interview_id))
        # Another tenant's interview does not exist for this caller.
        if manifest is None or manifest.tenant != tenant:
            raise _unknown_interview()
        return manifest

    def answer_media(self, interview_id: str, tenant: str, question_id: str) -> tuple[Path, StoredAnswer] | None:
        """Where the caller's answer to ``question_id`` is kept, as stored, and its facts; None when no
        media is held for it. 404 (not_found) for an unknown interview or question, or another tenant's."""
        manifest = self.read(interview_id, tenant)
        manifest.question_index(question_id)
        stored = manifest.answers.get(question_id)
        if stored is None or not stored.file:
            return None
        return self.root / interview_id / stored.file, stored

    def _write(self, manifest: Manifest) -> None:
        folder = self.root / manifest.interview_id
        temp = folder / f".manifest-{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as fh:
                fh.write(manifest.model_dump_json(indent=1).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, folder / MANIFEST)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _lock(self, interview_id: str) -> asyncio.Lock:
        lock = self._locks.get(interview_id)
        if lock is None:
            lock = self._locks[interview_id] = asyncio.Lock()
        return lock

    # The three operations of the API.
    async def create(self, request: NewInterview, tenant: str) -> str:
        """Open an interview; returns its id. 422 (unknown_role) for a role no framework defines."""
        role = request.role or self.default_role
        await self._require_known_role(role)
        manifest = Manifest(
            interview_id=self._ids.next(),
            tenant=tenant,
            role=role,
            candidate_ref=request.candidate_ref if self.candidates is None else None,
            questions=[Question(question_id=q.question_id, text=q.text) for q in request.questions],
            consent=Consent.model_validate(request.consent.model_dump()) if request.consent else None,
            created_at=time.time(),
        )

        def write() -> None:
            if request.candidate_ref and self.candidates is not None:  # first: erasure must find what is written
                self.candidates.record(tenant, manifest.interview_id, request.candidate_ref)
            (self.root / manifest.interview_id).mkdir(parents=True, mode=0o700)
            self._write(manifest)

        await asyncio.to_thread(write)
        log.info(
            "interview opened", extra={"interview_id": manifest.interview_id, "questions": len(manifest.questions)}
        )
        return manifest.interview_id

    async def _require_known_role(self, role: str) -> None:
        # Here rather than in fusion: an interview with an unknown role could never be scored.
        from poise_fusion.framework import available_frameworks

        known = sorted(await asyncio.to_thread(available_frameworks, self.frameworks_dir))
        if role not in known:
            raise ApiError(422, "unknown_role", f"unknown role {role!r}; known roles: {', '.join(known)}",
                           known_roles=known)

    async def receive(
        self,
        interview_id: str,
        question_id: str,
        tenant: str,
        body: AsyncIterator[bytes],
        declared_bytes: int | None = None,
    ) -> MediaInfo:
        """Stream one answer to disk, probe it and list it in the manifest (replacing an earlier one)."""
        async with self._lock(interview_id):
            manifest = await asyncio.to_thread(self.read, interview_id, tenant)
            index = manifest.question_index(question_id)
            manifest.require_open()
        if declared_bytes is not None and declared_bytes > self.limits.max_file_bytes:
            raise self._too_large()
        folder = self.root / interview_id
        name = f"a{index + 1}-{uuid.uuid4().hex[:12]}"
        partial, final = folder / f".{name}.part", folder / f"{name}.media"
        kept = False
        try:
            # The lock is not held while streaming: answers to other questions upload in parallel.
            await self._stream_to(partial, body, self._encryptor(tenant, interview_id, name))
            os.replace(partial, final)
            try:
                async with self._readable(final, tenant, interview_id, self.vault is not None, "probe") as media:
                    info = await asyncio.to_thread(isolated_probe, media, self.limits)
            except MediaRejected as exc:
                log.info("answer refused", extra={"interview_id": interview_id, "answer": index + 1, "code": exc.code})
                raise ApiError(422, exc.code, exc.message) from exc
            except MediaJobKilled as exc:
                log.warning("probing stopped from outside", extra={"interview_id": interview_id, "answer": index + 1})
                raise ApiError(exc.status, exc.code, exc.message) from exc
            async with self._lock(interview_id):
                manifest = await asyncio.to_thread(self.read, interview_id, tenant)
                manifest.require_open()  # completed while this answer was uploading
                previous = manifest.answers.get(question_id)
                manifest.answers[question_id] = StoredAnswer(
                    file=final.name, media=asdict(info), encrypted=self.vault is not None
                )
                await asyncio.to_thread(self._write, manifest)
                kept = True
            if previous is not None and previous.file:
                (folder / previous.file).unlink(missing_ok=True)
        finally:
            if not kept:  # refused, too large, client gone, or any failure: nothing half-written stays
                partial.unlink(missing_ok=True)
                final.unlink(missing_ok=True)
        log.info("answer accepted", extra={"interview_id": interview_id, "answer": index + 1, "bytes": info.size_bytes})
        return info

    async def record_consent(self, interview_id: str, tenant: str, consent: Consent) -> None:
        """Keep the candidate's consent with the open interview (the latest one given counts)."""
        async with self._lock(interview_id):
            manifest = await asyncio.to_thread(self.read, interview_id, tenant)
            manifest.require_open()
            manifest.consent = consent
            await asyncio.to_thread(self._write, manifest)

    async def complete(self, interview_id: str, tenant: str) -> None:
        """Publish the interview and its answers (their media is kept for playback). Safe to repeat;
        a completed interview is published again only when its messages were lost (``_messages_lost``).
        422 naming the question when an answer's full decode fails: the interview is open again."""
        async with self._lock(interview_id):
            manifest = await asyncio.to_thread(self.read, interview_id, tenant)
            if manifest.status == "completed":
                if await asyncio.to_thread(self._messages_lost, manifest):
                    await self._publish_completed(manifest)
                return  # published already: a repeated call changes nothing
            await self._require_consent(manifest)
            missing = manifest.missing()
            if missing:
                raise ApiError(
                    409, "answers_missing",
                    f"{len(missing)} of {len(manifest.questions)} questions have no answer yet", missing=missing,
                )
            if manifest.status == "open":
                manifest.status = "publishing"  # from here on answers cannot change, even across a crash
                await asyncio.to_thread(self._write, manifest)
            await self._publish_or_refuse(manifest)
            manifest.status, manifest.completed_at = "completed", time.time()
            await asyncio.to_thread(self._write, manifest)
        log.info("interview published", extra={"interview_id": interview_id, "answers": len(manifest.answers)})

    async def _publish_completed(self, manifest: Manifest) -> None:
        """Publish a completed interview again, its messages having died with an earlier process."""
        await self._publish_or_refuse(manifest)
        log.info("interview published again", extra={"interview_id": manifest.interview_id})

    async def _publish_or_refuse(self, manifest: Manifest) -> None:
        """Publish ``manifest``'s interview; its failures as the answers the client should hear."""
        interview_id = manifest.interview_id
        try:
            await self._publish(manifest)
        except MediaRejected as exc:  # an accepted file whose full decode its sandbox stopped
            await self._refuse(manifest, exc)
        except Exception as exc:  # noqa: BLE001 - becomes an answer the client can retry
            log.error(
                "publishing failed", extra={"interview_id": interview_id, "error": type(exc).__name__}
            )
            status = 503 if isinstance(exc, (ConnectionError, MediaJobKilled)) else 500
            raise ApiError(
                status, "publish_failed", "publishing the interview failed; calling complete again is safe"
            ) from exc
        self._published_here.add(interview_id)

    async def _refuse(self, manifest: Manifest, exc: MediaRejected) -> None:
        """Withdraw what was published of the interview, take the refused answer out of it and open
        it again, then raise the 422 that names the question whose answer must be uploaded again."""
        interview_id, question = manifest.interview_id, manifest.questions[exc.answer_index]
        log.warning("publishing refused", extra={"interview_id": interview_id, "answer": exc.answer_index + 1,
                                                 "code": exc.code})
        try:
            await self.gateway.withdraw_interview(interview_id, manifest.tenant, len(manifest.questions),
                                                  manifest.attempt)
        except Exception as failure:  # noqa: BLE001 - left "publishing": a repeated complete withdraws again
            log.error("withdrawing failed", extra={"interview_id": interview_id, "error": type(failure).__name__})
            raise ApiError(
                503, "publish_failed", "publishing the interview failed; calling complete again is safe"
            ) from failure
        refused = manifest.answers.pop(question.question_id)
        manifest.status, manifest.completed_at, manifest.attempt = "open", None, manifest.attempt + 1
        await asyncio.to_thread(self._write, manifest)
        self._published_here.discard(interview_id)
        if refused.file:
            (self.root / interview_id / refused.file).unlink(missing_ok=True)
        raise ApiError(
            422, exc.code,
            f"the answer to question {question.question_id!r} could not be decoded: {exc.message}. "
            "The interview is open again: upload that answer again, then complete it.",
            question_id=question.question_id,
        ) from exc

    async def _require_consent(self, manifest: Manifest) -> None:
        """409 consent_required when the tenant's policy needs consent and none was recorded."""
        if self.policies is None:
            return
        policy = await asyncio.to_thread(self.policies.get, manifest.tenant)
        refusal = policy.consent_refusal(manifest.consent)
        if refusal:
            log.info("interview refused", extra={"interview_id": manifest.interview_id, "code": "consent_required"})
            raise ApiError(409, "consent_required", f"{refusal}; record it when the interview is created, "
                           "or the candidate gives it on the candidate page")

    async def _publish(self, manifest: Manifest) -> None:
        """Publish the interview's announcement and answers; a ``MediaRejected`` says which answer."""
        folder = self.root / manifest.interview_id
        await self.gateway.open_interview(
            manifest.interview_id, manifest.tenant, manifest.role, manifest.questions, manifest.consent
        )
        for index, question in enumerate(manifest.questions):
            stored = manifest.answers[question.question_id]
            async with self._readable(
                folder / stored.file, manifest.tenant, manifest.interview_id, stored.encrypted, "publish"
            ) as media:
                try:
                    await self.gateway.publish_answer(
                        manifest.interview_id, manifest.tenant, index, AnswerUpload(question=question, path=media),
                        MediaInfo(**stored.media), manifest.attempt,
                    )
                except MediaRejected as exc:
                    exc.answer_index = index
                    raise

    def _encryptor(self, tenant: str, interview_id: str, name: str) -> "StreamEncryptor | None":
        return None if self.vault is None else self.vault.encryptor(tenant, interview_id, name)

    @contextlib.asynccontextmanager
    async def _readable(self, path: Path, tenant: str, interview_id: str, encrypted: bool, purpose: str
                        ) -> AsyncIterator[Path]:
        """``path`` itself, or a decrypted copy of it for as long as the block runs."""
        if not encrypted:
            yield path
            return
        if self.vault is None:
            raise RuntimeError("this answer is stored encrypted and the desk has no media vault")
        async with self.vault.clear_copy(path, tenant, interview_id, purpose) as clear:
            yield clear

    # Erasure and retention (poise_fusion.erasure and .retention call these).
    async def erase(self, interview_id: str) -> int:
        """Delete everything held for the interview (manifest, media, partial uploads); how many files."""
        if not _INTERVIEW_ID.match(interview_id):
            return 0
        async with self._lock(interview_id):
            return await asyncio.to_thread(_remove_folder, self.root / interview_id)

    def folder_ids(self) -> list[str]:
        """The interviews this desk holds a folder for."""
        if not self.root.is_dir():
            return []
        return sorted(f.name for f in self.root.iterdir() if _INTERVIEW_ID.match(f.name) and f.is_dir())

    async def sweep(self, expired: Callable[[Manifest], bool], *, orphans_before: float, dry_run: bool = False
                    ) -> list[tuple[str | None, str, int]]:
        """Erase the folders whose manifest is ``expired``, and folders without a manifest last
        changed before ``orphans_before``; (tenant, interview id, files) of each (dry: not erased)."""
        swept = []
        for interview_id in await asyncio.to_thread(self.folder_ids):
            folder = self.root / interview_id
            try:
                manifest = await asyncio.to_thread(self._load, folder)
                if manifest is None and folder.stat().st_mtime >= orphans_before:
                    continue
            except (ValueError, OSError):  # unreadable manifest: left to an operator, as prepare() does
                continue
            if manifest is not None and not expired(manifest):
                continue
            tenant = None if manifest is None else manifest.tenant
            if dry_run:
                files = await asyncio.to_thread(_count_files, folder)
            else:
                files = await self.erase(interview_id)
            swept.append((tenant, interview_id, files))
        return swept

    def _too_large(self) -> ApiError:
        limit = self.limits.max_file_bytes
        return ApiError(413, "too_large", f"the answer is larger than the limit of {limit} bytes")

    async def _stream_to(
        self, path: Path, body: AsyncIterator[bytes], encryptor: "StreamEncryptor | None" = None
    ) -> None:
        """Write ``body`` to ``path`` chunk by chunk (through ``encryptor`` when given); 413 as soon
        as it passes the size limit."""
        limit = self.limits.max_file_bytes
        seal = (lambda data: data) if encryptor is None else encryptor.update
        size = 0
        pending = bytearray()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(fd, "wb") as fh:
                async for chunk in body:
                    size += len(chunk)
                    if size > limit:
                        raise self._too_large()
                    pending += chunk
                    if len(pending) >= _WRITE_BYTES:
                        await asyncio.to_thread(lambda: fh.write(seal(pending)))
                        pending.clear()

                def finish() -> None:
                    fh.write(seal(pending))
                    if encryptor is not None:
                        fh.write(encryptor.finalize())
                    fh.flush()
                    os.fsync(fh.fileno())

                await asyncio.to_thread(finish)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise ApiError(507, "storage_full", "the gateway has no room for this answer now; retry later") from exc
            raise


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def _remove_folder(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    files = _count_files(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return files


# -- routes ------------------------------------------------------------------------------
_RAW_VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "description": "The answer's video file as it is (mp4, mov, webm, mkv, ...); not multipart.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def create_router(desk: UploadDesk, settings: PoiseSettings, keys: KeyStore, audit: AuditTrail | None = None
                  ) -> APIRouter:
    """The upload routes; the caller's API key (scope interviews:write) decides the tenant. With ``audit``,
    each interview created, answer accepted and interview completed is recorded before the answer is sent."""
    Caller = Annotated[Principal, Depends(requires(keys, "interviews:write"))]
    router = APIRouter(prefix="/v1/interviews", tags=["interviews"], route_class=ErrorRoute)
    if desk.frameworks_dir is None:  # a desk built without the folder checks roles against these settings'
        desk.frameworks_dir = settings.fusion.frameworks_dir

    async def record(caller: Principal, action: str, interview_id: str, **detail: Any) -> None:
        await record_access(audit, tenant=caller.tenant, actor=caller.key_id, action=action,
                            interview_id=interview_id, detail={"via": "rest", **detail})

    @router.post("", status_code=201)
    async def create_interview(body: NewInterview, caller: Caller) -> InterviewCreated:
        """Open an interview with its questions."""
        interview_id = await desk.create(body, caller.tenant)
        await record(caller, "interview.create", interview_id)
        return InterviewCreated(interview_id=interview_id)

    @router.put("/{interview_id}/answers/{question_id}", openapi_extra=_RAW_VIDEO_BODY)
    async def upload_answer(interview_id: str, question_id: str, request: Request, caller: Caller) -> AnswerAccepted:
        """Upload one answer: the raw request body is the video."""
        info = await desk.receive(interview_id, question_id, caller.tenant, request.stream(), declared_length(request))
        await record(caller, "answer.upload", interview_id, question_id=question_id, bytes=info.size_bytes)
        return AnswerAccepted.of(interview_id, question_id, info)

    @router.post("/{interview_id}/complete", status_code=202)
    async def complete_interview(interview_id: str, caller: Caller) -> Processing:
        """Publish the interview for scoring once every question has an answer."""
        await desk.complete(interview_id, caller.tenant)
        await record(caller, "interview.complete", interview_id)
        return Processing(interview_id=interview_id)

    return router
