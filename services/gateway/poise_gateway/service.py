"""The gateway: turn accepted answers into frame, audio and control messages.

Probing and decoding run in limited child processes (:mod:`poise_gateway.sandbox`), read from
worker threads while the event loop publishes, so a slow consumer slows the decoder through the
bus's back-pressure instead of letting frames pile up in memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from poise_common.bus import Bus
from poise_common.messages import (
    AnswerMediaDone,
    AudioChunk,
    AudioEnd,
    Consent,
    Envelope,
    Frame,
    FramesEnd,
    InterviewOpened,
    InterviewWithdrawn,
    Question,
    Topics,
)
from poise_common.settings import GatewaySettings
from poise_gateway.errors import MediaJobKilled, MediaRejected
from poise_gateway.probe import MediaInfo
from poise_gateway.sandbox import isolated_audio, isolated_frames, isolated_probe, shared_sandbox

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(frozen=True)
class AnswerUpload:
    """One answer of an interview: the question it answers and its media on local disk."""

    question: Question
    path: Path


def answer_id_for(interview_id: str, index: int, attempt: int = 0) -> str:
    """The id of an interview's answer on the bus. An interview published again after one of its
    answers was refused (``attempt`` 1, 2, ...) gets new ids, so that nothing left of the earlier
    attempt in an analyser or in fusion is taken for part of the new one."""
    return f"{interview_id}-a{index + 1}" + (f"-r{attempt}" if attempt else "")


async def _in_thread(items: Iterator, maxsize: int = 8):
    """Iterate a blocking generator on a worker thread, ``maxsize`` items ahead at most."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(_DONE), loop).result()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()

    worker = loop.run_in_executor(None, produce)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not queue.empty():  # unblock a producer waiting on a full queue
            queue.get_nowait()
        await worker


def validate_uploads(uploads: list[AnswerUpload], limits: GatewaySettings) -> list[MediaInfo]:
    """Probe every answer; raises ``MediaRejected`` (with ``answer_index``) for the first bad one."""
    infos = []
    for index, upload in enumerate(uploads):
        try:
            infos.append(isolated_probe(upload.path, limits))
        except MediaRejected as exc:
            exc.answer_index = index
            raise
    return infos


class Gateway:
    """Publishes interviews onto the bus. Validation happens before the first message."""

    def __init__(self, bus: Bus, settings: GatewaySettings) -> None:
        self.bus = bus
        self.settings = settings

    def warm_up(self) -> None:
        """Start the probe and decode processes ahead of the first upload (blocking: call it in a thread)."""
        shared_sandbox(self.settings).warm_up()

    def validate(self, uploads: list[AnswerUpload]) -> list[MediaInfo]:
        return validate_uploads(uploads, self.settings)

    async def open_interview(
        self, interview_id: str, tenant: str, role: str, questions: list[Question], consent: Consent | None = None
    ) -> None:
        await self.bus.publish(
            Topics.MEDIA_CONTROL,
            Envelope(
                interview_id=interview_id, tenant=tenant, stream="control", seq=0,
                payload=InterviewOpened(role=role, questions=questions, consent=consent),
            ),
        )

    async def withdraw_interview(self, interview_id: str, tenant: str, answers: int, attempt: int) -> None:
        """Take back what was published of the interview's ``attempt`` (its ``answers`` answers):
        fusion drops it, and whatever of it is still on its way (see ``InterviewWithdrawn``)."""
        await self.bus.publish(
            Topics.MEDIA_CONTROL,
            Envelope(
                interview_id=interview_id, tenant=tenant, stream="withdraw", seq=attempt,
                payload=InterviewWithdrawn(
                    answer_ids=[answer_id_for(interview_id, index, attempt) for index in range(answers)]
                ),
            ),
        )
        await self.bus.flush()

    async def publish_answer(
        self, interview_id: str, tenant: str, index: int, upload: AnswerUpload, info: MediaInfo, attempt: int = 0
    ) -> None:
        """Publish one answer's frames and audio, then announce their counts. Raises
        ``MediaRejected`` (or ``MediaJobKilled``) when either stream cannot be decoded to its end,
        once both streams have ended, so that nothing is published for the answer after that."""
        answer_id = answer_id_for(interview_id, index, attempt)
        base = Envelope(
            interview_id=interview_id, answer_id=answer_id, tenant=tenant, stream="control", seq=0,
            payload=FramesEnd(count=0),
        )
        counts = await asyncio.gather(
            self._publish_frames(base, upload.path, info.duration_s),
            self._publish_audio(base, upload, info.duration_s),
            return_exceptions=True,
        )
        for outcome in counts:
            if isinstance(outcome, BaseException):
                raise outcome
        frame_count, audio_count = counts
        await self.bus.publish(
            Topics.MEDIA_CONTROL,
            base.follow(
                "control",
                index + 1,
                AnswerMediaDone(
                    question_id=upload.question.question_id,
                    duration_s=info.duration_s,
                    frame_count=frame_count,
                    audio_count=audio_count,
                    has_video=info.has_video,
                    width=info.width,
                    height=info.height,
                    source_fps=info.fps,
                    sample_fps=self.settings.sample_fps,
                ),
            ),
        )
        # Every message of the answer is acknowledged by the bus before the caller hears "done".
        await self.bus.flush()

    async def _publish_frames(self, base: Envelope, path: Path, duration_s: float) -> int:
        async def encoded() -> AsyncIterator[Frame]:
            async for t_s, width, height, jpeg in _in_thread(isolated_frames(path, self.settings, duration_s)):
                yield Frame(t_s=round(t_s, 4), width=width, height=height, jpeg=jpeg)

        def end(count: int) -> FramesEnd:
            return FramesEnd(count=count)

        return await self._publish_stream(Topics.MEDIA_FRAMES, base, "frames", encoded(), end)

    async def _publish_audio(self, base: Envelope, upload: AnswerUpload, duration_s: float) -> int:
        async def chunks() -> AsyncIterator[AudioChunk]:
            async for t_s, pcm in _in_thread(isolated_audio(upload.path, self.settings, duration_s)):
                yield AudioChunk(t_s=t_s, pcm=pcm)

        def end(count: int) -> AudioEnd:
            return AudioEnd(count=count, question=upload.question.text)

        return await self._publish_stream(Topics.MEDIA_AUDIO, base, "audio", chunks(), end)

    async def _publish_stream(
        self, topic: str, base: Envelope, stream: str, messages: AsyncIterator[BaseModel],
        end: Callable[[int], BaseModel],
    ) -> int:
        """Publish ``messages`` as ``stream``, numbered from 0, then ``end(count)``; how many."""
        seq = 0
        try:
            async for message in messages:
                await self.bus.publish(topic, base.follow(stream, seq, message))
                seq += 1
        except (MediaRejected, MediaJobKilled):
            # Ended even so: an analyser holds an open answer's messages (in memory, and on the bus
            # for a replay) until its end comes. The answer is never announced, so never scored.
            await self.bus.publish(topic, base.follow(stream, seq, end(seq)))
            raise
        await self.bus.publish(topic, base.follow(stream, seq, end(seq)))
        return seq
