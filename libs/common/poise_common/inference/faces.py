"""The face model: MediaPipe FaceLandmarker (landmarks, blendshapes, head pose) per frame.

``FaceLandmarkerRunner`` tracks faces through one stream (VIDEO mode needs increasing
timestamps and one landmarker per stream). It returns raw arrays; turning them into
observable behaviour happens in the vision service, the same way for every backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# MediaPipe's 52 blendshapes in the order the model emits them (index 0 is "_neutral").
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
LANDMARKS = 478


@dataclass
class RawFaces:
    """Every face found in one frame, as the model gives them."""

    landmarks: np.ndarray  # (faces, 478, 3) float32: x, y in 0..1 of the frame, z relative
    blendshapes: np.ndarray  # (faces, 52) float32, in BLENDSHAPE_NAMES order
    matrices: np.ndarray  # (faces, 4, 4) float32 facial transformation matrices

    @property
    def count(self) -> int:
        return int(self.landmarks.shape[0])

    @classmethod
    def empty(cls) -> "RawFaces":
        return cls(
            np.zeros((0, LANDMARKS, 3), np.float32),
            np.zeros((0, len(BLENDSHAPE_NAMES)), np.float32),
            np.zeros((0, 4, 4), np.float32),
        )

    def blendshape_dict(self, face: int) -> dict[str, float]:
        return {name: float(v) for name, v in zip(BLENDSHAPE_NAMES, self.blendshapes[face])}


def decode_jpeg_rgb(data: bytes) -> np.ndarray:
    """JPEG bytes -> contiguous H x W x 3 RGB uint8."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("frame is not a decodable JPEG")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


class FaceLandmarkerRunner:
    """One MediaPipe FaceLandmarker in VIDEO mode: one per stream, frames in time order."""

    def __init__(self, model_path: Path, max_faces: int = 2) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"FaceLandmarker model not found: {model_path}")
        # Imported here: loading MediaPipe costs about a second and only face workers need it.
        os.environ.setdefault("GLOG_minloglevel", "2")
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
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._last_ms = -1

    def detect(self, rgb: np.ndarray, t_ms: int) -> RawFaces:
        if self._landmarker is None:
            raise RuntimeError("the face landmarker is closed")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        # Two frames can round to the same millisecond; VIDEO mode rejects that.
        t_ms = max(int(t_ms), self._last_ms + 1, 0)
        self._last_ms = t_ms
        # Padded frames (PyAV at widths such as 590 px) make MediaPipe silently find no face.
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect_for_video(image, t_ms)
        if not result.face_landmarks:
            return RawFaces.empty()
        landmarks = np.array([[(p.x, p.y, p.z) for p in face] for face in result.face_landmarks], np.float32)
        blendshapes = np.array(
            [[c.score for c in sorted(face, key=lambda c: c.index)] for face in result.face_blendshapes],
            np.float32,
        )
        matrices = np.array(result.facial_transformation_matrixes, np.float32).reshape(-1, 4, 4)
        return RawFaces(landmarks, blendshapes, matrices)

    def close(self) -> None:
        """Release the landmarker (MediaPipe 1.2 raises at exit for ones left open)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "FaceLandmarkerRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
