"""Vision: one face stream per answer, one feature message per sampled frame.

The face model runs wherever the inference backend says (in this process, or on Triton as
one sequence per answer); this service only keeps each answer's main-face state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from poise_common.bus import Bus, Hold, Subscription, current_delivery
from poise_common.bus.errors import ReplayFromHold
from poise_common.inference.backend import FACE, FaceStream, InferenceBackend, StreamLost
from poise_common.messages import Envelope, Frame, FrameFeatures, FramesEnd, Topics, VisionEnd
from poise_vision.face_tracker import MainFace

log = logging.getLogger(__name__)

GROUP = "vision"


@dataclass
class _Answer:
    stream: FaceStream
    main: MainFace
    hold: Hold
    last_seq: int = -1


class VisionService:
    def __init__(self, bus: Bus, backend: InferenceBackend) -> None:
        self.bus = bus
        self.backend = backend
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
            await answer.stream.close()
        self._answers.clear()
        await self.backend.stop()

    async def _restart(self, answer_id: str) -> _Answer:
        old = self._answers.pop(answer_id, None)
        if old is not None:
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
            try:
                raw = await answer.stream.detect(payload.jpeg, int(round(payload.t_s * 1000)))
            except StreamLost as exc:
                self._answers.pop(env.answer_id, None)
                raise ReplayFromHold() from exc
            answer.last_seq = env.seq
            count, face = answer.main.observe(raw, (payload.width, payload.height), payload.t_s)
            features = FrameFeatures(t_s=payload.t_s, face_count=count, face=face)
            await self.bus.publish(Topics.FEATURES_VISION, env.follow("vision", env.seq, features))
        elif isinstance(payload, FramesEnd):
            answer = self._answers.pop(env.answer_id, None)
            if answer is not None:
                await answer.stream.close()
            await self.bus.publish(
                Topics.FEATURES_VISION, env.follow("vision", payload.count, VisionEnd(count=payload.count))
            )
            if answer is not None:
                answer.hold.release()
        else:
            raise TypeError(f"vision does not consume {payload.kind}")
