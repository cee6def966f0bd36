"""Follow the main face through one answer's frames with MediaPipe's FaceLandmarker."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from poise_common.signals import FaceObservation
from poise_vision.face_geometry import face_box, observe_face

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


class FaceTracker:
    """One FaceLandmarker in VIDEO mode for one answer stream.

    VIDEO mode tracks landmarks from frame to frame instead of re-detecting, and needs
    strictly increasing timestamps: never share a tracker between answers or threads.
    Close it (or use it as a context manager): MediaPipe 1.2 raises at interpreter exit
    for landmarkers left open.
    """

    def __init__(self, model_path: Path, max_faces: int = 2) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"FaceLandmarker model not found: {model_path}")
        # Imported here: loading MediaPipe costs ~1 s and is only needed by vision workers.
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=max_faces,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._mp = mp
        self._landmarker: Any = vision.FaceLandmarker.create_from_options(options)
        self._last_ms = -1
        self._main_box: Box | None = None
        self._warned_multiple = False

    def observe(self, rgb: np.ndarray, t_s: float) -> tuple[int, FaceObservation | None]:
        """Faces in one RGB frame (H x W x 3, uint8) taken ``t_s`` seconds into the answer.

        Returns the number of faces found and the main face's observation (None without
        a face). Frames must come in time order.
        """
        if self._landmarker is None:
            raise RuntimeError("FaceTracker is closed")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        if not math.isfinite(t_s):
            raise ValueError(f"timestamp must be finite, got {t_s}")
        # Padded frames (PyAV at widths such as 590 or 844 px) make MediaPipe silently
        # find no face; a contiguous copy costs far less than the model.
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect_for_video(image, self._next_timestamp_ms(t_s))

        faces = result.face_landmarks
        if not faces:
            return 0, None
        if len(faces) > 1 and not self._warned_multiple:
            self._warned_multiple = True
            log.info("more than one face in frame", extra={"faces": len(faces), "t_s": round(t_s, 3)})

        landmarks = [np.array([(p.x, p.y, p.z) for p in face], dtype=np.float64) for face in faces]
        main = self._pick_main([face_box(points) for points in landmarks])
        blendshapes = {c.category_name: c.score for c in result.face_blendshapes[main]}
        transform = np.asarray(result.facial_transformation_matrixes[main], dtype=np.float64)
        height, width = rgb.shape[:2]
        observation = observe_face(landmarks[main], blendshapes, transform, (width, height))
        self._main_box = observation.box
        return len(faces), observation

    def close(self) -> None:
        """Release the landmarker; safe to call twice."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _next_timestamp_ms(self, t_s: float) -> int:
        # Two frames can round to the same millisecond (or a caller's clock can step
        # back); MediaPipe rejects that, so nudge forward by the smallest step.
        ms = max(int(round(t_s * 1000.0)), self._last_ms + 1, 0)
        self._last_ms = ms
        return ms

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
