"""Vision: one FaceTracker per answer stream, one feature message per sampled frame."""

from __future__ import annotations

import asyncio
import logging

import cv2
import numpy as np

from poise_common.bus import Bus, Hold, Subscription, current_delivery
from poise_common.messages import Envelope, Frame, FrameFeatures, FramesEnd, Topics, VisionEnd
from poise_common.settings import VisionSettings
from poise_vision.face_tracker import FaceTracker

log = logging.getLogger(__name__)

GROUP = "vision"


def decode_jpeg(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("frame is not a decodable JPEG")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


class VisionService:
    def __init__(self, bus: Bus, settings: VisionSettings) -> None:
        self.bus = bus
        self.settings = settings
        self._trackers: dict[str, FaceTracker] = {}
        self._last_seq: dict[str, int] = {}
        # Each open answer holds its first frame: if this worker dies, the answer is
        # replayed from that frame, through a fresh tracker, and gives the same features.
        self._holds: dict[str, Hold] = {}
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        if not self.settings.face_model_path.is_file():
            raise FileNotFoundError(
                f"face model not found at {self.settings.face_model_path}; run `make setup` "
                "or set POISE_VISION__FACE_MODEL_PATH"
            )
        # Build (and drop) one landmarker now: a bad model file fails at start, and
        # MediaPipe's import and graph set-up are not paid on the first answer.
        await asyncio.to_thread(lambda: FaceTracker(self.settings.face_model_path, self.settings.max_faces).close())
        self._subscription = await self.bus.subscribe([Topics.MEDIA_FRAMES], GROUP, self.handle)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close(drain=True)
        for tracker in self._trackers.values():
            tracker.close()
        self._trackers.clear()

    def _tracker(self, answer_id: str, seq: int) -> FaceTracker:
        tracker = self._trackers.get(answer_id)
        if tracker is not None and seq <= self._last_seq.get(answer_id, -1):
            # A replay restarts the answer: tracking state must restart with it.
            tracker.close()
            tracker = None
        self._last_seq[answer_id] = seq
        if tracker is None:
            tracker = FaceTracker(self.settings.face_model_path, self.settings.max_faces)
            self._trackers[answer_id] = tracker
        return tracker

    def _observe(self, answer_id: str, seq: int, frame: Frame) -> FrameFeatures:
        rgb = decode_jpeg(frame.jpeg)
        count, face = self._tracker(answer_id, seq).observe(rgb, frame.t_s)
        return FrameFeatures(t_s=frame.t_s, face_count=count, face=face)

    async def handle(self, env: Envelope) -> None:
        payload = env.payload
        if isinstance(payload, Frame):
            if env.seq == 0 or env.answer_id not in self._holds:
                self._holds[env.answer_id] = current_delivery().hold()
            features = await asyncio.to_thread(self._observe, env.answer_id, env.seq, payload)
            await self.bus.publish(Topics.FEATURES_VISION, env.follow("vision", env.seq, features))
        elif isinstance(payload, FramesEnd):
            tracker = self._trackers.pop(env.answer_id, None)
            self._last_seq.pop(env.answer_id, None)
            if tracker is not None:
                tracker.close()
            await self.bus.publish(
                Topics.FEATURES_VISION, env.follow("vision", payload.count, VisionEnd(count=payload.count))
            )
            hold = self._holds.pop(env.answer_id, None)
            if hold is not None:
                hold.release()
        else:
            raise TypeError(f"vision does not consume {payload.kind}")
