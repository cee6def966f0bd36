"""Vision: one face stream per answer; the features of its sampled frames, in batches.

The face model runs wherever the inference backend says (in this process, or on Triton as
one sequence per answer, or several with face lanes); this service only keeps each answer's
main-face state. A stream
that takes several frames at once (``FaceStream.depth``) gets the next frames while the
previous one's features are published, so the model never waits on the bus; features are
still published in frame order, and an open answer holds its first frame, so a worker that
dies with frames in flight replays the whole answer. That hold is also what lets features wait
for a batch (``batch_frames`` frames a message, the rest when the answer's frames end): fusion
then stores each batch in one transaction, and the bus carries a fiftieth of the messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from poise_common.bus import Bus, Hold, Subscription, current_delivery
from poise_common.bus.base import dead_letter_record
from poise_common.bus.errors import ReplayFromHold
from poise_common.inference.backend import FACE, FaceStream, InferenceBackend, InferenceUnavailable, StreamLost
from poise_common.inference.faces import RawFaces
from poise_common.messages import Envelope, Frame, FrameFeaturesBatch, FramesEnd, FrameSeen, Topics, VisionEnd
from poise_vision.face_tracker import MainFace

log = logging.getLogger(__name__)

GROUP = "vision"


@dataclass
class _InFlight:
    env: Envelope
    frame: Frame
    faces: asyncio.Future[RawFaces]


@dataclass
class _Answer:
    stream: FaceStream
    main: MainFace
    hold: Hold
    last_seq: int = -1
    in_flight: deque[_InFlight] = field(default_factory=deque)
    batch: list[FrameSeen] = field(default_factory=list)  # answered, not yet published

    def cancel(self) -> None:
        for frame in self.in_flight:
            frame.faces.cancel()
        self.in_flight.clear()
        self.batch.clear()


class VisionService:
    def __init__(self, bus: Bus, backend: InferenceBackend, *, batch_frames: int = 50) -> None:
        self.bus = bus
        self.backend = backend
        self.batch_frames = batch_frames
        # Each open answer holds its first frame: if this worker dies, or the model server
        # loses the answer's tracking state, the answer is replayed from that frame through a
        # fresh stream and gives the same features.
        self._answers: dict[str, _Answer] = {}
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        await self.backend.start({FACE})
        self._subscription = await self.bus.subscribe([Topics.MEDIA_FRAMES], GROUP, self.handle)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close(drain=True)
        for answer in self._answers.values():
            answer.cancel()
            await answer.stream.close()
        self._answers.clear()
        await self.backend.stop()

    async def _restart(self, answer_id: str) -> _Answer:
        old = self._answers.pop(answer_id, None)
        if old is not None:
            old.cancel()
            await old.stream.close()
        answer = _Answer(self.backend.face_stream(answer_id), MainFace(), current_delivery().hold())
        self._answers[answer_id] = answer
        return answer

    async def handle(self, env: Envelope) -> None:
        payload = env.payload
        if isinstance(payload, Frame):
            answer = self._answers.get(env.answer_id)
            if answer is None or env.seq == 0 or env.seq <= answer.last_seq:
                # A new answer, or a replay of one: tracking state starts over with it.
                answer = await self._restart(env.answer_id)
            faces = answer.stream.submit(payload.jpeg, int(round(payload.t_s * 1000)))
            answer.in_flight.append(_InFlight(env, payload, faces))
            answer.last_seq = env.seq
            await self._publish_done(env.answer_id, answer, keep=answer.stream.depth - 1)
        elif isinstance(payload, FramesEnd):
            answer = self._answers.get(env.answer_id)
            if answer is not None:
                await self._publish_done(env.answer_id, answer, keep=0)
                await self._publish_batch(answer, env)
                self._answers.pop(env.answer_id, None)
                await answer.stream.close()
            await self.bus.publish(
                Topics.FEATURES_VISION,
                env.follow("vision", payload.count, VisionEnd(count=payload.count, face_method=self.backend.face_method())),
            )
            if answer is not None:
                answer.hold.release()
        else:
            raise TypeError(f"vision does not consume {payload.kind}")

    async def _publish_done(self, answer_id: str, answer: _Answer, keep: int) -> None:
        """Publish the features of the oldest frames in flight, in order, until at most ``keep``
        remain; frames already answered beyond that are published too."""
        while answer.in_flight and (len(answer.in_flight) > keep or answer.in_flight[0].faces.done()):
            frame = answer.in_flight[0]
            try:
                raw = await frame.faces
            except StreamLost as exc:
                await self._forget(answer_id, answer, "stream_lost")
                raise ReplayFromHold() from exc
            except Exception as exc:
                if isinstance(exc, InferenceUnavailable) and answer.stream.depth > 1:
                    # Frames after this one were acknowledged: the answer starts over from its
                    # first frame once the server is back (each try waits out the client's retries).
                    await self._forget(answer_id, answer, "inference_unavailable")
                    raise ReplayFromHold() from exc
                answer.in_flight.popleft()
                if answer.stream.depth == 1:
                    # Still the frame's own delivery: the bus retries it on this stream (waiting for
                    # a server that is away), then dead-letters it.
                    answer.last_seq = frame.env.seq - 1
                    raise
                await self._dead_letter(frame, exc)
                continue
            answer.in_flight.popleft()
            count, face = answer.main.observe(raw, (frame.frame.width, frame.frame.height), frame.frame.t_s)
            answer.batch.append(FrameSeen(seq=frame.env.seq, t_s=frame.frame.t_s, face_count=count, face=face))
            if len(answer.batch) >= self.batch_frames:
                await self._publish_batch(answer, frame.env)

    async def _forget(self, answer_id: str, answer: _Answer, reason: str) -> None:
        """Drop an answer's state and its stream (its features will come again from a replay)."""
        log.warning("answer's frames replay from its first frame", extra={"reason": reason})
        self._answers.pop(answer_id, None)
        answer.cancel()
        await answer.stream.close()

    async def _publish_batch(self, answer: _Answer, env: Envelope) -> None:
        """The answer's waiting features as one message (``env``: any message of the answer)."""
        if not answer.batch:
            return
        batch = FrameFeaturesBatch(frames=answer.batch)
        answer.batch = []
        await self.bus.publish(Topics.FEATURES_VISION, env.follow("vision", batch.frames[0].seq, batch))

    async def _dead_letter(self, frame: _InFlight, exc: Exception) -> None:
        """A frame that failed after its delivery was acknowledged goes where the bus would have put it."""
        log.error("face model failed on a frame (seq %d): %s", frame.env.seq, type(exc).__name__)
        record = dead_letter_record(Topics.MEDIA_FRAMES, frame.env.to_bytes(), exc, 1)
        await self.bus.publish_raw(Topics.dead_letter(GROUP), frame.env.interview_id, record)
