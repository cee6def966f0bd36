"""``poise.v1.ScoringService`` over the REST API's backends, and the gRPC server that serves it.

The servicer holds whichever backends its process has: the gateway's ``UploadDesk`` (uploads)
and ``Eraser`` (erasure requests), fusion's ``FusionStore`` (scorecards, listings) and
``EventHub`` (live events); ``poise serve`` has them all. A method whose backend is missing answers UNIMPLEMENTED and names the service
that serves it. The rules are the REST API's: the same key and scopes, the same tenant
isolation (another tenant's interview is NOT_FOUND), the same validation and error codes,
mapped to gRPC status codes; the REST error code travels in the trailing metadata
``poise-error-code``.

This module imports no service package at import time (``poise_common`` is below them); the
backends are passed in, and their errors are recognised by shape (``status``, ``code``,
``message``), as the gateway's ``ApiError`` and ``MediaRejected`` have them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import ValidationError

from poise_common.api_errors import describe_errors
from poise_common.audit_trail import AuditTrail, record_access
from poise_common.auth import KeyStore, Principal
from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from poise_common.grpc_api.poise.v1 import scoring_pb2_grpc as pb_grpc
from poise_common.paging import BadCursor, decode_cursor, page_of

if TYPE_CHECKING:  # the service packages depend on poise_common, not the other way round
    from poise_fusion.erasure import Eraser
    from poise_fusion.events import EventHub
    from poise_fusion.store import FusionStore
    from poise_gateway.api import UploadDesk

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ScoringService"].full_name
# Uploads come in chunks of up to 1 MiB; 4 MiB leaves room for a client that sends larger ones.
MAX_RECEIVE_BYTES = 4 << 20
# A scorecard of 50 answers stays far below this.
MAX_SEND_BYTES = 16 << 20
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_STATUSES = ("processing", "scored", "failed")

# The REST API's HTTP status -> gRPC status code.
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    507: grpc.StatusCode.UNAVAILABLE,
}
_SERVED_BY = {"desk": "the gateway", "store": "fusion", "events": "fusion", "eraser": "the gateway"}


def _json(document: Any) -> str:
    """Serialised exactly as the REST API's JSONResponse does, so the two documents are equal byte for byte."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _validation_message(exc: ValidationError) -> str:
    return describe_errors(exc.errors(include_url=False, include_input=False))


class ScoringServicer(pb_grpc.ScoringServiceServicer):
    """``poise.v1.ScoringService`` on the backends this process has (None: not served here).

    With ``audit``, every call that touches candidate data is recorded (UNAVAILABLE if it cannot be).
    """

    def __init__(
        self,
        keys: KeyStore,
        desk: UploadDesk | None = None,
        store: FusionStore | None = None,
        events: EventHub | None = None,
        audit: AuditTrail | None = None,
        eraser: Eraser | None = None,
    ) -> None:
        self.keys = keys
        self.desk = desk
        self.store = store
        self.events = events
        self.audit = audit
        self.eraser = eraser

    async def _record(self, principal: Principal, action: str, interview_id: str | None = None, **detail) -> None:
        await record_access(self.audit, tenant=principal.tenant, actor=principal.key_id, action=action,
                            interview_id=interview_id, detail={"via": "grpc", **detail})

    # -- shared steps ------------------------------------------------------------------
    async def _require(self, context: grpc.aio.ServicerContext, backend: str) -> Any:
        found = getattr(self, backend)
        if found is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"this process does not serve this method; {_SERVED_BY[backend]} does"
            )
        return found

    async def _principal(self, context: grpc.aio.ServicerContext, scope: str) -> Principal:
        """The caller's key from ``authorization: Bearer <key>``: UNAUTHENTICATED, PERMISSION_DENIED."""
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, rest = value.partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    token = rest.strip()
        found = await asyncio.to_thread(self.keys.verify, token) if token else None
        if found is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "a valid API key is required (metadata authorization: Bearer <key>)"
            )
        if not found.may(scope):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"this key lacks the {scope!r} scope")
        return found

    @staticmethod
    async def _abort(
        context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str, error_code: str
    ) -> NoReturn:
        await context.abort(code, message, trailing_metadata=(("poise-error-code", error_code),))

    @contextlib.asynccontextmanager
    async def _errors(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        """The backends' errors as gRPC status codes."""
        try:
            yield
        except grpc.aio.AbortError:
            raise
        except ValidationError as exc:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, _validation_message(exc), "invalid_request")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status the client sees
            code, message = getattr(exc, "code", None), getattr(exc, "message", None)
            if isinstance(code, str) and isinstance(message, str):
                status = getattr(exc, "status", 422)  # MediaRejected has no HTTP status: it is a 422
                await self._abort(context, _CODES.get(status, grpc.StatusCode.INTERNAL), message, code)
            log.error("gRPC call failed", extra={"method": method, "error": type(exc).__name__}, exc_info=exc)
            await self._abort(context, grpc.StatusCode.INTERNAL, "internal error", "internal")

    # -- uploads (the gateway) -----------------------------------------------------------
    async def CreateInterview(
        self, request: pb.CreateInterviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateInterviewResponse:
        desk = await self._require(context, "desk")
        principal = await self._principal(context, "interviews:write")
        from poise_gateway.api import NewInterview  # present wherever a desk is

        async with self._errors(context, "CreateInterview"):
            body = NewInterview(
                role=request.role or None,
                questions=[{"question_id": q.question_id, "text": q.text} for q in request.questions],
                candidate_ref=request.candidate_ref or None,
                consent=(
                    {"given_at": request.consent.given_at, "notice_version": request.consent.notice_version}
                    if request.HasField("consent") else None
                ),
            )
            interview_id = await desk.create(body, principal.tenant)
            await self._record(principal, "interview.create", interview_id)
        return pb.CreateInterviewResponse(interview_id=interview_id)

    async def UploadAnswer(
        self, request_iterator: AsyncIterator[pb.UploadAnswerRequest], context: grpc.aio.ServicerContext
    ) -> pb.AnswerInfo:
        desk = await self._require(context, "desk")
        principal = await self._principal(context, "interviews:write")
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or not first.interview_id or not first.question_id:
            await self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT,
                "the first message must carry interview_id and question_id", "invalid_request",
            )

        async def chunks() -> AsyncIterator[bytes]:
            if first.data:
                yield first.data
            async for message in messages:  # ids on later messages are ignored, as documented
                if message.data:
                    yield message.data

        async with self._errors(context, "UploadAnswer"):
            info = await desk.receive(
                first.interview_id, first.question_id, principal.tenant, chunks(), first.total_bytes or None
            )
            await self._record(principal, "answer.upload", first.interview_id, question_id=first.question_id,
                               bytes=info.size_bytes)
        return pb.AnswerInfo(
            interview_id=first.interview_id, question_id=first.question_id, size_bytes=info.size_bytes,
            duration_s=info.duration_s, width=info.width or 0, height=info.height or 0, fps=info.fps or 0.0,
            container=info.container, codecs=pb.Codecs(video=info.video_codec or "", audio=info.audio_codec),
        )

    async def CompleteInterview(
        self, request: pb.CompleteInterviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteInterviewResponse:
        desk = await self._require(context, "desk")
        principal = await self._principal(context, "interviews:write")
        async with self._errors(context, "CompleteInterview"):
            await desk.complete(request.interview_id, principal.tenant)
            await self._record(principal, "interview.complete", request.interview_id)
        return pb.CompleteInterviewResponse(interview_id=request.interview_id, status="processing")

    # -- reads and events (fusion) -------------------------------------------------------
    async def GetScorecard(
        self, request: pb.GetScorecardRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetScorecardResponse:
        store = await self._require(context, "store")
        principal = await self._principal(context, "scores:read")
        async with self._errors(context, "GetScorecard"):
            found = None
            if 0 < len(request.interview_id) <= 64:
                found = await asyncio.to_thread(store.interview_status, request.interview_id)
            # Another tenant's interview does not exist for this caller.
            if found is None or found[0] != principal.tenant:
                await self._abort(context, grpc.StatusCode.NOT_FOUND, "no such interview", "not_found")
            status = found[1]
            if status == "failed":
                return pb.GetScorecardResponse(status="failed", error=await self._failure(store, request.interview_id))
            if status == "scored":
                document = await asyncio.to_thread(store.reviewed_scorecard, request.interview_id)
                if document is not None:
                    await self._record(principal, "scorecard.read", request.interview_id)
                    return pb.GetScorecardResponse(status="scored", scorecard_json=_json(document))
                status = "processing"  # the same answer as REST's for a row without its document
        return pb.GetScorecardResponse(status=status)

    @staticmethod
    async def _failure(store: FusionStore, interview_id: str) -> pb.Error:
        """Why the interview failed, as the REST API's 422 body says it."""
        from poise_fusion.api import failure_error  # present wherever a store is

        reason = await asyncio.to_thread(store.failure_reason, interview_id)
        return pb.Error(**failure_error(reason))

    async def ListScorecards(
        self, request: pb.ListScorecardsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListScorecardsResponse:
        store = await self._require(context, "store")
        principal = await self._principal(context, "scores:read")
        problem = None
        if request.status and request.status not in _STATUSES:
            problem = f"status must be one of {', '.join(_STATUSES)} or empty"
        elif len(request.role) > 128:
            problem = "role is at most 128 characters"
        elif not 0 <= request.page_size <= MAX_PAGE_SIZE:
            problem = f"page_size must be 0 to {MAX_PAGE_SIZE}"
        try:
            after = decode_cursor(request.page_token)
        except BadCursor:
            problem = problem or "page_token is not one this server issued"
        if problem:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem, "invalid_request")
        limit = request.page_size or DEFAULT_PAGE_SIZE
        async with self._errors(context, "ListScorecards"):
            rows = await asyncio.to_thread(
                store.list_interviews, principal.tenant, status=request.status or None,
                role=request.role or None, limit=limit + 1, after=after,
            )
            items, cursor = page_of(rows, limit)
            await self._record(principal, "scorecard.list", interview_ids=[i["interview_id"] for i in items])
        return pb.ListScorecardsResponse(
            items=[
                pb.InterviewSummary(
                    interview_id=i["interview_id"], role=i["role"], status=i["status"],
                    answer_count=i["answer_count"], created_at=i["created_at"], scored_at=i["scored_at"],
                )
                for i in items
            ],
            next_page_token=cursor or "",
        )

    async def WatchScoreEvents(
        self, request: pb.WatchScoreEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScoreEvent]:
        events = await self._require(context, "events")
        principal = await self._principal(context, "scores:read")
        async with self._errors(context, "WatchScoreEvents"):
            await self._record(principal, "events.subscribe")
        # aclosing: the subscription ends when the client cancels, not when the generator is collected.
        async with contextlib.aclosing(events.events(principal.tenant)) as summaries:
            async for summary in summaries:
                if summary is None:  # subscribed: from here on no event is missed
                    await context.send_initial_metadata((("poise-subscribed", "1"),))
                    continue
                yield _score_event(summary)

    # -- erasure (the gateway) -----------------------------------------------------------
    async def EraseCandidate(
        self, request: pb.EraseCandidateRequest, context: grpc.aio.ServicerContext
    ) -> pb.ErasureReceipt:
        eraser = await self._require(context, "eraser")
        principal = await self._principal(context, "candidates:erase")
        if not 0 < len(request.candidate_ref) <= 320:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "candidate_ref is 1 to 320 characters",
                              "invalid_request")
        async with self._errors(context, "EraseCandidate"):
            receipt = await eraser.erase_candidate(principal.tenant, request.candidate_ref, principal.key_id)
        return pb.ErasureReceipt(
            erasure_id=receipt.erasure_id, status=receipt.status, requested_at=receipt.requested_at,
            completed_at=receipt.completed_at or 0.0, interviews=receipt.interviews, removed=receipt.removed,
        )


def _score_event(summary: dict) -> pb.ScoreEvent:
    """An event summary (``poise_fusion.events.event_summary``) as the proto message."""
    # A map<string, double> cannot hold a competency without a score (too little evidence):
    # those are named in insufficient_evidence instead.
    scores = {name: score for name, score in (summary.get("competencies") or {}).items() if score is not None}
    return pb.ScoreEvent(
        type=summary["type"], interview_id=summary["interview_id"],
        answer_id=summary.get("answer_id") or "", question_id=summary.get("question_id") or "",
        model_version=summary.get("model_version") or "", competencies=scores,
        insufficient_evidence=summary.get("insufficient_evidence") or [], created_at=summary["created_at"],
        error=summary.get("error") or "",
    )


PORT_ENV = "POISE_GRPC_PORT"


def port_from_env(environ: Mapping[str, str] = os.environ) -> int | None:
    """The gRPC port a distributed service process serves on: ``POISE_GRPC_PORT``, unset or
    empty for none. Read by the processes' builds, not a setting: in that mode each process
    is its own container, and only the one that sets it serves gRPC."""
    value = environ.get(PORT_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{PORT_ENV} must be a port number (1-65535), not {value!r}")
    return int(value)


class _Malformed:
    """Stands for a request message that did not parse."""


_MALFORMED = _Malformed()


class MalformedRequests(grpc.aio.ServerInterceptor):
    """A request message that does not parse is INVALID_ARGUMENT (grpc answers UNKNOWN, naming
    the exception), on every method, streamed requests included."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer

        def lenient(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception:  # noqa: BLE001 - DecodeError, or a parser's own failure on hostile bytes
                return _MALFORMED

        async def refuse(context: grpc.aio.ServicerContext) -> NoReturn:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid message for {handler_call_details.method}",
                trailing_metadata=(("poise-error-code", "invalid_request"),),
            )

        async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for request in requests:
                if request is _MALFORMED:
                    await refuse(context)
                yield request

        if handler.request_streaming:
            behaviour = handler.stream_unary or handler.stream_stream
            if handler.response_streaming:
                async def stream_stream(requests, context):
                    async for response in behaviour(checked(requests, context), context):
                        yield response
                return grpc.stream_stream_rpc_method_handler(stream_stream, lenient, handler.response_serializer)

            async def stream_unary(requests, context):
                return await behaviour(checked(requests, context), context)
            return grpc.stream_unary_rpc_method_handler(stream_unary, lenient, handler.response_serializer)
        if handler.response_streaming:
            behaviour = handler.unary_stream

            async def unary_stream(request, context):
                if request is _MALFORMED:
                    await refuse(context)
                async for response in behaviour(request, context):
                    yield response
            return grpc.unary_stream_rpc_method_handler(unary_stream, lenient, handler.response_serializer)
        behaviour = handler.unary_unary

        async def unary_unary(request, context):
            if request is _MALFORMED:
                await refuse(context)
            return await behaviour(request, context)
        return grpc.unary_unary_rpc_method_handler(unary_unary, lenient, handler.response_serializer)


class GrpcServer:
    """Serves ``servicer`` on ``host:port`` with the standard health service (SERVING once
    started, NOT_SERVING while stopping) and server reflection.

    A runner service (``start()``/``stop()``): list it after the services whose backends it
    uses, so that it is started last and stopped first. ``port`` 0 takes a free port;
    ``self.port`` is the one bound.
    """

    def __init__(self, servicer: ScoringServicer, host: str, port: int, grace_s: float = 5.0) -> None:
        self.servicer = servicer
        self.host = host
        self.port = port
        self.grace_s = grace_s
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None

    async def start(self) -> None:
        server = grpc.aio.server(
            interceptors=[MalformedRequests()],
            options=[
                ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                ("grpc.max_send_message_length", MAX_SEND_BYTES),
                # Without this a second process could bind the same port and share its calls.
                ("grpc.so_reuseport", 0),
            ]
        )
        pb_grpc.add_ScoringServiceServicer_to_server(self.servicer, server)
        checker = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address} for gRPC: {exc}") from None
        if not bound:
            raise OSError(f"cannot listen on {address} for gRPC")
        await server.start()
        self._server, self._health, self.port = server, checker, bound
        for name in ("", SERVICE_NAME):
            await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving gRPC", extra={"port": bound})

    async def stop(self) -> None:
        """NOT_SERVING, then calls in flight get ``grace_s`` to finish (open event streams are then cancelled)."""
        if self._server is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._server.stop(self.grace_s)
        self._server = self._health = None
