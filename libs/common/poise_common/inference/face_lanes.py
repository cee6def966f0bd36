"""One answer's frames through several landmarkers at once, with exactly the faces one gives.

MediaPipe follows faces from each frame into the next, so an answer's frames form one chain:
what it finds in a frame can depend on the frames before. Lanes (a landmarker each, on a thread
of its own) run later spans of the answer ahead of the chain, each from a fresh start. When the
chain reaches such a span it runs the span's first frame itself and compares. The only state a
landmarker carries into the next frame is the faces it found, so equal faces mean the lane
that ran ahead is where the chain would have been: its faces are the chain's, and the chain goes
on in that lane. Different faces (MediaPipe following a face its detector alone misses, as with
two faces in view) mean the chain runs that span itself, and the answer stops running ahead.

With one face in view, every frame's faces come from the detector and the first check of every
span agrees; the cost is that one frame run twice per span.
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
from poise_common.metrics import InferenceMetrics, NullMetrics

# (lane, frame, t_ms, start over first) -> faces; the lane's landmarker, made on first use
# (where starting over changes nothing: it is new). The frame is what ``decode`` made of the JPEG,
# or the JPEG itself where there is no ``decode`` (a model server decodes it).
Detect = Callable[[int, "np.ndarray | bytes", int, bool], RawFaces]


@dataclass(eq=False)
class _Frame:
    jpeg: bytes | None
    t_ms: int
    result: Future = field(default_factory=Future)  # the chain's faces for this frame
    ahead: RawFaces | BaseException | None = None  # run ahead of the chain, not yet checked
    rgb: Future | None = None  # decoded ahead of its lane


@dataclass
class _Ahead:
    """A span a lane runs ahead of the chain."""

    lane: int
    next: int  # the span's next frame to run (an index into the answer's frames)


def same_faces(a: RawFaces | BaseException | None, b: RawFaces | BaseException | None) -> bool:
    return (
        isinstance(a, RawFaces) and isinstance(b, RawFaces)
        and np.array_equal(a.landmarks, b.landmarks)
        and np.array_equal(a.blendshapes, b.blendshapes)
        and np.array_equal(a.matrices, b.matrices)
    )


class FaceLanes:
    """Frames submitted in order; each one's faces, as one landmarker following them all would find."""

    def __init__(self, lanes: int, span_frames: int, decode: Callable[[bytes], np.ndarray] | None, detect: Detect,
                 close_lane: Callable[[int], None], checked: Callable[[str], None] = lambda outcome: None) -> None:
        if lanes < 1 or span_frames < 1:
            raise ValueError(f"need at least one lane and one frame a span, got {lanes} and {span_frames}")
        self.span = span_frames
        self._decode, self._detect, self._close_lane, self._count_check = decode, detect, close_lane, checked
        self._cond = threading.Condition()
        # The answer's frames by index; a frame whose faces are final is dropped (None).
        self._frames: list[_Frame | None] = []
        self._chain_lane, self._chain_next = 0, 0
        self._ahead: dict[int, _Ahead] = {}  # span number -> the lane running it ahead
        self._lane_span: list[int | None] = [None] * lanes  # the span each lane runs ahead, if any
        self._run_ahead = lanes > 1
        self._closed = False
        self.checks = {"agreed": 0, "differed": 0}
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
            for frame in self._frames[self._chain_next:]:
                if frame is not None:
                    frame.result.cancel()
            self._cond.notify_all()
        self._threads.shutdown(wait=False)
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)
        return self._loops

    # -- the lanes ---------------------------------------------------------------------------------

    def _loop(self, lane: int) -> None:
        try:
            while (job := self._next_job(lane)) is not None:
                kind, index, frame = job
                faces = self._run(lane, index, frame, start_over=kind == "ahead" and index % self.span == 0)
                with self._cond:
                    if kind == "chain":
                        self._chained(index, faces)
                    elif kind == "ahead":
                        self._ran_ahead(lane, index, faces)
                    else:
                        self._checked(lane, index, faces)
                    self._cond.notify_all()
        finally:
            self._close_lane(lane)

    def _run(self, lane: int, index: int, frame: _Frame, start_over: bool) -> RawFaces | BaseException:
        decoded, frame.rgb = frame.rgb, None
        self._decode_ahead(index + 1)
        try:
            if self._decode is None:
                return self._detect(lane, frame.jpeg, frame.t_ms, start_over)
            rgb = decoded.result() if decoded is not None else self._decode(frame.jpeg)
            return self._detect(lane, rgb, frame.t_ms, start_over)
        except Exception as exc:  # noqa: BLE001 - the frame's own failure, handed to whoever awaits it
            return exc

    def _decode_ahead(self, index: int) -> None:
        """Start decoding frame ``index`` (the lane's likely next) if it has come and nobody has."""
        if self._decoder is None:
            return
        with self._cond:
            if index < len(self._frames) and not self._closed:
                frame = self._frames[index]
                if frame is not None and frame.rgb is None and frame.jpeg is not None and frame.ahead is None:
                    frame.rgb = self._decoder.submit(self._decode, frame.jpeg)

    def _next_job(self, lane: int) -> tuple[str, int, _Frame] | None:
        """(what to do, the frame's index, the frame), taken under the lock: once the lock is let
        go, the chain may finish with the frame and drop it from the list."""
        with self._cond:
            while not self._closed:
                job = self._chain_job() if lane == self._chain_lane else self._ahead_job(lane)
                if job is not None:
                    return job[0], job[1], self._frames[job[1]]
                self._cond.wait()
            return None

    def _chain_job(self) -> tuple[str, int] | None:
        index = self._chain_next
        if index >= len(self._frames):
            return None
        ahead = self._ahead.get(index // self.span) if index % self.span == 0 else None
        if ahead is None:
            return "chain", index
        if self._frames[index].ahead is None:
            # Reached before the lane ahead ran the span's first frame: the chain runs the span.
            self._drop_ahead(index // self.span)
            return "chain", index
        return "check", index

    def _ahead_job(self, lane: int) -> tuple[str, int] | None:
        span = self._lane_span[lane]
        if span is None:
            span = self._free_span() if self._run_ahead else None
            if span is None:
                return None
            self._ahead[span] = _Ahead(lane, span * self.span)
            self._lane_span[lane] = span
        ahead = self._ahead[span]
        # A span run to its end waits, its landmarker untouched, for the chain to check it.
        if ahead.next < (span + 1) * self.span and ahead.next < len(self._frames):
            return "ahead", ahead.next
        return None

    def _free_span(self) -> int | None:
        """The first span after the chain's that has frames and no lane."""
        span = self._chain_next // self.span + 1
        while span * self.span < len(self._frames):
            if span not in self._ahead:
                return span
            span += 1
        return None

    def _drop_ahead(self, span: int) -> None:
        ahead = self._ahead.pop(span)
        self._lane_span[ahead.lane] = None
        for frame in self._frames[span * self.span:ahead.next]:
            frame.ahead = None

    # -- what a job's faces mean (under the lock) --------------------------------------------------

    def _final(self, index: int, faces: RawFaces | BaseException) -> None:
        frame = self._frames[index]
        self._frames[index] = None  # nothing of a frame is kept past its faces
        frame.jpeg, frame.ahead, frame.rgb = None, None, None
        if frame.result.cancelled():
            return
        if isinstance(faces, BaseException):
            frame.result.set_exception(faces)
        else:
            frame.result.set_result(faces)

    def _chained(self, index: int, faces) -> None:
        self._final(index, faces)
        self._chain_next = index + 1

    def _ran_ahead(self, lane: int, index: int, faces) -> None:
        if lane == self._chain_lane and self._chain_next == index:
            self._chained(index, faces)  # the chain reached this lane while the frame ran
            return
        span = self._lane_span[lane]
        if span is None or self._ahead[span].next != index:
            return  # the chain took the span over meanwhile
        self._frames[index].ahead = faces
        self._ahead[span].next = index + 1

    def _checked(self, lane: int, index: int, faces) -> None:
        span = index // self.span
        ahead = self._ahead.pop(span)
        self._lane_span[ahead.lane] = None
        if same_faces(faces, self._frames[index].ahead):
            self.checks["agreed"] += 1
            self._count_check("agreed")
            for n in range(index, ahead.next):
                self._final(n, self._frames[n].ahead)
            self._chain_lane, self._chain_next = ahead.lane, ahead.next
            return
        # The chain knew something a fresh start did not: it goes on here, and nothing runs ahead.
        self.checks["differed"] += 1
        self._count_check("differed")
        self._run_ahead = False
        for other in list(self._ahead):
            self._drop_ahead(other)
        for frame in self._frames[index + 1:ahead.next]:
            frame.ahead = None
        self._chained(index, faces)


class LanedFaceStream(FaceStream):
    """A face stream whose frames go through ``FaceLanes``; a backend gives the lanes' model calls."""

    def __init__(self, lanes: int, span_frames: int, decode: Callable[[bytes], np.ndarray] | None,
                 metrics: InferenceMetrics | NullMetrics) -> None:
        checks = metrics.face_lane_checks
        self._lanes = FaceLanes(lanes, span_frames, decode, self._detect, self._close_lane,
                                checked=lambda outcome: checks.labels(outcome=outcome).inc())
        # Enough frames ahead that the model never waits for the event loop between two, and with
        # several lanes, a span for each lane to run ahead of the chain.
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
