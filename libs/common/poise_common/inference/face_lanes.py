"""One answer's frames through several landmarkers at once, with the faces one gives.

The face model follows faces from each frame into the next, so what a landmarker finds in a frame
can depend on the frames before. An answer is therefore cut into spans of ``span_frames`` frames and
each span is followed from a fresh start (its first frame's faces come from the detector alone):
whichever lane (a landmarker each, on a thread of its own) runs a span, and however many lanes
there are, every frame's faces are those of one landmarker started over at each span. A free
lane takes the next span whose first frame has come, so later spans run beside earlier ones.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from poise_common.inference.backend import FaceStream
from poise_common.inference.faces import RawFaces

# (lane, frame, t_ms, start over first) -> faces; the lane's landmarker, made on first use
# (where starting over changes nothing: it is new). The frame is what ``decode`` made of the JPEG,
# or the JPEG itself where there is no ``decode`` (a model server decodes it).
Detect = Callable[[int, "np.ndarray | bytes", int, bool], RawFaces]


@dataclass(eq=False)
class _Frame:
    jpeg: bytes | None
    t_ms: int
    result: Future = field(default_factory=Future)  # the frame's faces
    rgb: Future | None = None  # decoded ahead of its lane


def same_faces(a: RawFaces | BaseException | None, b: RawFaces | BaseException | None) -> bool:
    return (
        isinstance(a, RawFaces) and isinstance(b, RawFaces)
        and np.array_equal(a.landmarks, b.landmarks)
        and np.array_equal(a.blendshapes, b.blendshapes)
        and np.array_equal(a.matrices, b.matrices)
    )


class FaceLanes:
    """Frames submitted in order; each one's faces, as one landmarker started over at every span
    would find them."""

    def __init__(self, lanes: int, span_frames: int, decode: Callable[[bytes], np.ndarray] | None, detect: Detect,
                 close_lane: Callable[[int], None]) -> None:
        if lanes < 1 or span_frames < 1:
            raise ValueError(f"need at least one lane and one frame a span, got {lanes} and {span_frames}")
        self.span = span_frames
        self._decode, self._detect, self._close_lane = decode, detect, close_lane
        self._cond = threading.Condition()
        # The answer's frames by index; a frame whose faces are final is dropped (None).
        self._frames: list[_Frame | None] = []
        self._lane_next: list[int | None] = [None] * lanes  # the next frame of the span each lane runs
        self._starts_over = [False] * lanes  # whether the lane's model starts over before its next frame
        self._free_span = 0  # the first span no lane has taken
        self._closed = False
        self._threads = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="poise-face")
        # Each lane's next frame is decoded while the lane runs the model on this one, so the
        # model's threads do nothing else: at most one decoded frame waits per lane.
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poise-jpeg") if decode else None
        self._loops = [self._threads.submit(self._loop, lane) for lane in range(lanes)]

    def submit(self, jpeg: bytes, t_ms: int) -> Future:
        frame = _Frame(jpeg, t_ms)
        with self._cond:
            if self._closed:
                raise RuntimeError("the face lanes are closed")
            self._frames.append(frame)
            self._cond.notify_all()
        return frame.result

    def close(self) -> list[Future]:
        """Stop after the frames running now; each lane closes its landmarker on its own thread.
        The lanes' loops, to wait for."""
        with self._cond:
            self._closed = True
            for frame in self._frames:
                if frame is not None:
                    frame.result.cancel()
            self._cond.notify_all()
        self._threads.shutdown(wait=False)
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)
        return self._loops

    def _loop(self, lane: int) -> None:
        try:
            while (job := self._next_job(lane)) is not None:
                index, frame = job
                faces = self._run(lane, index, frame)
                with self._cond:
                    self._final(index, faces)
                    following = index + 1
                    self._lane_next[lane] = following if following % self.span else None
        finally:
            self._close_lane(lane)

    def _next_job(self, lane: int) -> tuple[int, _Frame] | None:
        """The lane's next frame, taken under the lock."""
        with self._cond:
            while not self._closed:
                if self._lane_next[lane] is None and self._free_span * self.span < len(self._frames):
                    self._lane_next[lane] = self._free_span * self.span
                    self._free_span += 1
                    self._starts_over[lane] = True
                index = self._lane_next[lane]
                if index is not None and index < len(self._frames):
                    return index, self._frames[index]
                self._cond.wait()
            return None

    def _run(self, lane: int, index: int, frame: _Frame) -> RawFaces | BaseException:
        decoded, frame.rgb = frame.rgb, None
        self._decode_ahead(index + 1)
        try:
            image = frame.jpeg if self._decode is None else (
                decoded.result() if decoded is not None else self._decode(frame.jpeg))
        except Exception as exc:  # noqa: BLE001 - the frame's own failure, handed to whoever awaits it
            return exc
        # Kept past a span's first frame if that one is no image: the model must never see the
        # span's frames with what it followed before.
        start_over, self._starts_over[lane] = self._starts_over[lane], False
        try:
            return self._detect(lane, image, frame.t_ms, start_over)
        except Exception as exc:  # noqa: BLE001 - as above
            return exc

    def _decode_ahead(self, index: int) -> None:
        """Start decoding frame ``index`` (the lane's likely next) if it has come and nobody has."""
        if self._decoder is None:
            return
        with self._cond:
            if index < len(self._frames) and not self._closed:
                frame = self._frames[index]
                if frame is not None and frame.rgb is None and frame.jpeg is not None:
                    frame.rgb = self._decoder.submit(self._decode, frame.jpeg)

    def _final(self, index: int, faces: RawFaces | BaseException) -> None:
        """(under the lock)"""
        frame = self._frames[index]
        self._frames[index] = None  # nothing of a frame is kept past its faces
        frame.jpeg, frame.rgb = None, None
        if frame.result.cancelled():
            return
        if isinstance(faces, BaseException):
            frame.result.set_exception(faces)
        else:
            frame.result.set_result(faces)


class LanedFaceStream(FaceStream):
    """A face stream whose frames go through ``FaceLanes``; a backend gives the lanes' model calls."""

    def __init__(self, lanes: int, span_frames: int, decode: Callable[[bytes], np.ndarray] | None) -> None:
        self._lanes = FaceLanes(lanes, span_frames, decode, self._detect, self._close_lane)
        # Enough frames ahead that the model never waits for the event loop between two, and with
        # several lanes, a span for each lane beside the earliest one.
        self.depth = 4 + (lanes - 1) * self._lanes.span
        self._closed = False

    @abc.abstractmethod
    def _detect(self, lane: int, frame: np.ndarray | bytes, t_ms: int, start_over: bool) -> RawFaces:
        """One frame through ``lane``'s model (on the lane's thread); see ``Detect``."""

    @abc.abstractmethod
    def _close_lane(self, lane: int) -> None:
        """Free ``lane``'s model (on the lane's thread, as it stops)."""

    def _after_close(self) -> None:
        """Called once the lanes have stopped."""

    def submit(self, jpeg: bytes, t_ms: int) -> asyncio.Future[RawFaces]:
        return asyncio.wrap_future(self._lanes.submit(jpeg, t_ms))

    async def detect(self, jpeg: bytes, t_ms: int) -> RawFaces:
        return await self.submit(jpeg, t_ms)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.gather(*(asyncio.wrap_future(loop) for loop in self._lanes.close()))
        finally:
            self._after_close()
