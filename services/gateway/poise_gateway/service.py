"""The gateway: turn accepted answers into frame, audio and control messages.

Probing and decoding run in limited child processes (:mod:`poise_gateway.sandbox`), read from
worker threads while the event loop publishes, so a slow consumer slows the decoder through the
bus's back-pressure instead of letting frames pile up in memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


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
    Question,
    Topics,
)
from poise_common.settings import GatewaySettings
from poise_gateway.errors import MediaRejected
from poise_gateway.probe import MediaInfo
from poise_gateway.sandbox import isolated_audio, isolated_frames, isolated_probe, shared_sandbox

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(frozen=True)
class AnswerUpload:
    """One answer of an interview: the question it answers and its media on local disk."""

    question: Question
    path: Path


def answer_id_for(interview_id: str, index: int) -> str:
    return f"{interview_id}-a{index + 1}"


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

    async def publish_answer(
        self, interview_id: str, tenant: str, index: int, upload: AnswerUpload, info: MediaInfo
    ) -> None:
        """Publish one answer's frames and audio, then announce their counts."""
        answer_id = answer_id_for(interview_id, index)
        base = Envelope(
            interview_id=interview_id, answer_id=answer_id, tenant=tenant, stream="control", seq=0,
            payload=FramesEnd(count=0),
        )
        frame_count, audio_count = await asyncio.gather(
            self._publish_frames(base, upload.path, info.duration_s),
            self._publish_audio(base, upload, info.duration_s),
        )
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
        def encoded() -> Iterator[Frame]:
            for t_s, width, height, jpeg in isolated_frames(path, self.settings, duration_s):
                yield Frame(t_s=round(t_s, 4), width=width, height=height, jpeg=jpeg)

        seq = 0
        async for frame in _in_thread(encoded()):
            await self.bus.publish(Topics.MEDIA_FRAMES, base.follow("frames", seq, frame))
            seq += 1
        await self.bus.publish(Topics.MEDIA_FRAMES, base.follow("frames", seq, FramesEnd(count=seq)))
        return seq

    async def _publish_audio(self, base: Envelope, upload: AnswerUpload, duration_s: float) -> int:
        seq = 0
        async for t_s, pcm in _in_thread(isolated_audio(upload.path, self.settings, duration_s)):
            await self.bus.publish(Topics.MEDIA_AUDIO, base.follow("audio", seq, AudioChunk(t_s=t_s, pcm=pcm)))
            seq += 1
        await self.bus.publish(
            Topics.MEDIA_AUDIO,
            base.follow("audio", seq, AudioEnd(count=seq, question=upload.question.text)),
        )
        return seq
