"""Follow the main face through one answer's frames.

``MainFace`` turns a model's raw faces into the main face's observable behaviour, the same
way whichever backend ran the model. ``FaceTracker`` is the in-process convenience that
pairs it with an in-process face model runner (tests, benchmarks, tools).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import TracebackType

import numpy as np

from poise_common.inference.faces import FaceLandmarkerRunner, RawFaces
from poise_common.signals import FaceObservation
from poise_vision.face_geometry import face_box, observe_face

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


class MainFace:
    """Which face is the candidate's, frame after frame, and what it shows."""

    def __init__(self) -> None:
        self._main_box: Box | None = None
        self._warned_multiple = False

    def observe(self, raw: RawFaces, frame_size: tuple[int, int], t_s: float = 0.0) -> tuple[int, FaceObservation | None]:
        """(faces found, the main face's observation or None) for one frame of ``frame_size`` (w, h)."""
        if raw.count == 0:
            return 0, None
        if raw.count > 1 and not self._warned_multiple:
            self._warned_multiple = True
            log.info("more than one face in frame", extra={"faces": raw.count, "t_s": round(t_s, 3)})
        landmarks = [raw.landmarks[i].astype(np.float64) for i in range(raw.count)]
        main = 0 if raw.count == 1 else self._pick_main([face_box(points) for points in landmarks])
        observation = observe_face(
            landmarks[main], raw.blendshape_dict(main), raw.matrices[main].astype(np.float64), frame_size
        )
        self._main_box = observation.box
        return raw.count, observation

    def _pick_main(self, boxes: list[Box]) -> int:
        """Index of the main face: the one nearest the last main face, else the largest.

        "Nearest" must be within the last face's own size, so that a newcomer does not
        inherit the candidate's place after the candidate has left the frame.
        """
        if len(boxes) == 1:
            return 0
        if self._main_box is not None:
            px, py, pw, ph = self._main_box
            centre = (px + pw / 2, py + ph / 2)
            distances = [math.dist(centre, (x + w / 2, y + h / 2)) for x, y, w, h in boxes]
            nearest = min(range(len(boxes)), key=distances.__getitem__)
            if distances[nearest] <= max(pw, ph):
                return nearest
        return max(range(len(boxes)), key=lambda i: boxes[i][2] * boxes[i][3])


class FaceTracker:
    """One in-process FaceLandmarker (VIDEO mode) and its main face, for one answer stream.

    Frames must come in time order; never share a tracker between answers or threads.
    Close it (or use it as a context manager).
    """

    def __init__(self, model_path: Path, max_faces: int = 2) -> None:
        self._runner: FaceLandmarkerRunner | None = FaceLandmarkerRunner(Path(model_path), max_faces)
        self._main = MainFace()

    def observe(self, rgb: np.ndarray, t_s: float) -> tuple[int, FaceObservation | None]:
        """Faces in one RGB frame (H x W x 3, uint8) taken ``t_s`` seconds into the answer."""
        if self._runner is None:
            raise RuntimeError("FaceTracker is closed")
        if not math.isfinite(t_s):
            raise ValueError(f"timestamp must be finite, got {t_s}")
        raw = self._runner.detect(rgb, int(round(t_s * 1000.0)))
        height, width = rgb.shape[:2]
        return self._main.observe(raw, (width, height), t_s)

    def close(self) -> None:
        """Release the landmarker; safe to call twice."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
