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

    # Decoding straight to RGB gives the same pixels as BGR then a channel swap, without the swap.
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if rgb is None:
        raise ValueError("frame is not a decodable JPEG")
    return np.ascontiguousarray(rgb)


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
        self._last_shape: tuple[int, ...] | None = None
        self._direct = _direct_call(self._landmarker)

    def detect(self, rgb: np.ndarray, t_ms: int) -> RawFaces:
        if self._landmarker is None:
            raise RuntimeError("the face landmarker is closed")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        # Two frames can round to the same millisecond; VIDEO mode rejects that.
        t_ms = max(int(t_ms), self._last_ms + 1, 0)
        self._last_ms = t_ms
        self._last_shape = rgb.shape
        # Padded frames (PyAV at widths such as 590 px) make MediaPipe silently find no face.
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self._direct is not None:
            return self._direct(image, t_ms)
        return self._via_python_objects(image, t_ms)

    def start_over(self) -> None:
        """Forget the faces tracked so far: the next frame's faces come from fresh detections,
        exactly as on a new landmarker.

        MediaPipe follows the previous frame's faces into the next one (and runs its detector
        only while fewer than ``max_faces`` are followed). A black frame leaves none to follow.
        It costs one detector pass (about 2 ms) where a new landmarker costs 20 ms; tests check
        that what comes after is bit for bit what a new landmarker gives.
        """
        if self._last_shape is not None:
            self.detect(np.zeros(self._last_shape, np.uint8), self._last_ms + 1)

    def _via_python_objects(self, image, t_ms: int) -> RawFaces:
        """MediaPipe's public result: one Python object per landmark (about 1.5 ms a frame)."""
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
            self._direct = None
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "FaceLandmarkerRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _direct_call(landmarker):
    """``detect_for_video`` reading the C result straight into arrays, or None where this
    MediaPipe does not expose the C call the public method wraps.

    The public method builds 478 Python objects per face and frame, about a sixth of the
    face model's time on this CPU; the arrays hold the same float32 values.
    """
    try:
        from mediapipe.tasks.python.vision import face_landmarker as module

        call, close_result = landmarker._lib.MpFaceLandmarkerDetectForVideo, landmarker._lib.MpFaceLandmarkerCloseResult
        handle, result_type = landmarker._handle, module.MpFaceLandmarkerResultC
    except AttributeError:
        return None
    import ctypes

    def detect(image, t_ms: int) -> RawFaces:
        result = result_type()
        call(handle, image._image_ptr, None, t_ms, ctypes.byref(result))
        try:
            return _raw_from_c(result)
        finally:
            close_result(ctypes.byref(result))

    return detect


def _raw_from_c(result) -> RawFaces:
    """Copy a ``MpFaceLandmarkerResult`` (C structs) into ``RawFaces``."""
    count = int(result.face_landmarks_count)
    if count == 0:
        return RawFaces.empty()
    landmarks = np.stack([_struct_fields(result.face_landmarks[i].landmarks, result.face_landmarks[i].landmarks_count,
                                         ("x", "y", "z")) for i in range(count)])
    blendshapes = np.zeros((count, len(BLENDSHAPE_NAMES)), np.float32)
    for i in range(int(result.face_blendshapes_count)):
        categories = result.face_blendshapes[i]
        index, score = _struct_fields(categories.categories, categories.categories_count, ("index", "score")).T
        blendshapes[i] = score[np.argsort(index, kind="stable")]
    matrices = np.stack([
        # Column-major in C: read as (cols, rows), then transpose, as MediaPipe's own to_numpy does.
        np.ctypeslib.as_array(m.data, shape=(m.cols, m.rows)).T.astype(np.float32)
        for m in (result.facial_transformation_matrixes[i] for i in range(int(result.facial_transformation_matrixes_count)))
    ]).reshape(-1, 4, 4)
    return RawFaces(landmarks, blendshapes, matrices)


def _struct_fields(pointer, count: int, names: tuple[str, ...]) -> np.ndarray:
    """(count, len(names)) float32 copy of the named numeric fields of a C array of structs."""
    import ctypes

    count = int(count)
    if count == 0 or not pointer:
        return np.zeros((0, len(names)), np.float32)
    struct = pointer._type_
    types = dict(struct._fields_)
    # Described field by field: numpy cannot read the structs' string pointers from ctypes itself.
    dtype = np.dtype({
        "names": list(names),
        "formats": [np.dtype(types[name]) for name in names],
        "offsets": [getattr(struct, name).offset for name in names],
        "itemsize": ctypes.sizeof(struct),
    })
    memory = (ctypes.c_char * (count * dtype.itemsize)).from_address(ctypes.addressof(pointer.contents))
    records = np.frombuffer(memory, dtype, count)
    return np.stack([records[name].astype(np.float32) for name in names], axis=1)
