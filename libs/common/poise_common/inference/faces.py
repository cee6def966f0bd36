"""The face model: MediaPipe FaceLandmarker's models (landmarks, blendshapes, head pose) per frame.

``FaceLandmarkerRunner`` tracks faces through one stream, in time order: one face on LiteRT
(``face_finder``, ``face_follower``), several through MediaPipe's graph (VIDEO mode needs
increasing timestamps and one landmarker per stream). It returns raw arrays; turning them into
observable behaviour happens in the vision service, the same way for every backend.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poise_common.inference.face_finder import region as face_region

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


# How FaceLandmarkerRunner measures faces. It changes whenever the runner's output would, and is
# recorded with every answer's features, so that audits and calibrations can tell features measured
# one way from another (scorecards from before it was recorded measured faces with MediaPipe's
# detector on every frame).
FACE_METHOD = "face-landmarker-models-on-litert/follow-main-face/look-every-5"
# Frames between two looks for another face while one face is followed (0.5 s at 10 frames a second).
LOOK_EVERY = 5
# A look's detector score for another face. Below the landmarker's own 0.5: a look only hands the
# frames to the landmarker for all faces, whose detector then decides, and a small face in the
# background scores 0.37-0.63 from frame to frame (a second face in a single-face recording, at most 0.39).
LOOK_SCORE = 0.4
# A fresh find's detector score: MediaPipe's landmarker's own.
FIND_SCORE = 0.5


class FaceLandmarkerRunner:
    """The face model on one stream (frames in time order): the main face followed from frame
    to frame, with a regular look for others.

    MediaPipe's landmarker follows the faces it found into the next frame and runs its face
    detector only while it follows fewer than it looks for. Looking for two faces with one in
    view therefore ran the detector on every frame, and each frame's landmarks came from the
    detector's coarse box: the detector's 1.5 ms on every frame, and 27 % more frame-to-frame
    jitter of the landmarks than following the face (bench/face_levers.py). So one face is
    followed, and every ``look_every`` frames (and after a frame with none) the detector alone
    looks at the whole frame. Where it sees more than one face, MediaPipe's landmarker looking for
    ``max_faces`` takes over, from a fresh start, until it has seen at most one face for
    ``look_every`` frames in a row.

    The one face is found and followed outside MediaPipe's graph (``follower=True``, the
    default): the bundle's own detector, landmark and blendshape models on LiteRT, with the
    graph's steps around them redone (``face_finder``, ``face_follower``): 14 % less CPU for the
    face model, landmarks a few hundredths of a pixel from MediaPipe's (bench/face_follower.py),
    and MediaPipe loaded only when a second face comes into view. ``follower=False`` leaves every
    frame to MediaPipe's graph (tests and benchmarks compare the two).

    A frame with no face leaves nothing followed: what comes after is bit for bit what a new
    runner gives (``start_over``, and a model server's black frame, rely on it).
    """

    def __init__(
        self, model_path: Path, max_faces: int = 2, look_every: int = LOOK_EVERY, follower: bool = True
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        if look_every < 1:
            raise ValueError(f"look_every must be at least 1, got {look_every}")
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"FaceLandmarker model not found: {model_path}")
        self._model_path, self._max_faces, self._look_every = model_path, max_faces, look_every
        self._mp = None  # MediaPipe, imported where its graph is used
        self._all: MediaPipeLandmarker | None = None  # made the first time a look sees more than one face
        if follower:
            from poise_common.inference.face_finder import FaceFinder
            from poise_common.inference.face_follower import FaceFollower

            self._finder: FaceFinder | None = FaceFinder(model_path)
            self._follower: FaceFollower | None = FaceFollower(model_path)
            self._one: MediaPipeLandmarker | None = None
            self._detector = None
        else:
            self._finder = self._follower = None
            self._one = MediaPipeLandmarker(model_path, 1)
            self._detector = _face_detector(model_path) if max_faces > 1 else None
        self._open = True
        self._all_following = False
        self._until_look = 0  # frames before the next look; 0: look at this frame
        self._few_in_a_row = 0  # frames in a row the landmarker for all faces saw at most one
        self._last_ms = -1
        self._last_shape: tuple[int, ...] | None = None

    def detect(self, rgb: np.ndarray, t_ms: int) -> RawFaces:
        if not self._open:
            raise RuntimeError("the face landmarker is closed")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        self._last_shape = rgb.shape
        # Padded frames (PyAV at widths such as 590 px) make MediaPipe silently find no face.
        frame = _Frame(np.ascontiguousarray(rgb), self._mediapipe)
        if self._max_faces == 1:
            return self._one_face(frame, t_ms, None)
        found = None
        if not self._all_following and self._until_look == 0:
            self._until_look = self._look_every
            found, several = self._look(frame)
            if several:
                self._all_following, self._few_in_a_row = True, 0
                self._stop_following()
                self._start_over(self._landmarker_for_all())
        if self._all_following:
            faces = self._landmarker_for_all().detect(frame.image, self._next_ms(t_ms))
            self._few_in_a_row = self._few_in_a_row + 1 if faces.count <= 1 else 0
            if faces.count == 0 or self._few_in_a_row >= self._look_every:
                # Back to following one face, found afresh by the next frame.
                self._all_following = False
                self._start_over_one()
                self._until_look = 0 if faces.count == 0 else self._look_every
            return faces
        faces = self._one_face(frame, t_ms, found)
        # With no face followed, the next frame is looked at whole, as on a new runner.
        self._until_look = 0 if faces.count == 0 else self._until_look - 1
        return faces

    def start_over(self) -> None:
        """Forget the faces followed so far: the next frame's faces come from fresh detections,
        exactly as on a new runner.

        What a black frame through ``detect`` leaves (a model server's start-over), without its
        look. Outside MediaPipe's graph that is forgetting the face followed; MediaPipe's
        landmarker for one face (``follower=False``) gets the black frame (one detector pass,
        about 2 ms, where a new landmarker costs 20 ms). The one for all faces starts over
        whenever it takes over. Tests check that what comes after is bit for bit what a new
        runner gives, and what a black frame through a model server gives.
        """
        self._all_following, self._until_look = False, 0
        self._start_over_one()

    def _look(self, frame: "_Frame") -> tuple[list | None, bool]:
        """The detector on the whole frame: (the faces a fresh find would start from, where the
        look already has them; whether there is more than one face)."""
        if self._finder is not None:
            looked, found = self._finder.find(frame.rgb, LOOK_SCORE, FIND_SCORE)
            return found, len(looked) > 1
        return None, len(self._detector.detect(frame.image).detections) > 1

    def _one_face(self, frame: "_Frame", t_ms: int, found: list | None) -> RawFaces:
        """The one face: followed from the last frame, or found afresh."""
        t = self._next_ms(t_ms)
        if self._follower is None:
            return self._one.detect(frame.image, t)
        if self._follower.following:
            return self._follower.follow(frame.rgb, t)
        if found is None:
            (found,) = self._finder.find(frame.rgb, FIND_SCORE)
        if not found:
            return RawFaces.empty()
        height, width = frame.rgb.shape[:2]
        return self._follower.start_from(frame.rgb, face_region(found[0], width, height), t)

    def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.stop()

    def _start_over_one(self) -> None:
        self._stop_following()
        if self._one is not None:
            self._start_over(self._one)

    def _next_ms(self, t_ms: int) -> int:
        # Two frames can round to the same millisecond; VIDEO mode rejects that.
        self._last_ms = max(int(t_ms), self._last_ms + 1, 0)
        return self._last_ms

    def _start_over(self, landmarker: "MediaPipeLandmarker") -> None:
        if self._last_shape is not None:
            mp = self._mediapipe()
            black = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros(self._last_shape, np.uint8))
            landmarker.detect(black, self._next_ms(self._last_ms + 1))

    def _landmarker_for_all(self) -> "MediaPipeLandmarker":
        if self._all is None:
            self._all = MediaPipeLandmarker(self._model_path, self._max_faces)
        return self._all

    def _mediapipe(self):
        if self._mp is None:
            # Imported here: loading MediaPipe costs about a second, and outside its graph it is
            # only needed once a second face comes into view.
            os.environ.setdefault("GLOG_minloglevel", "2")
            import mediapipe as mp

            self._mp = mp
        return self._mp

    def close(self) -> None:
        """Release the landmarkers (MediaPipe 1.2 raises at exit for ones left open)."""
        for model in (self._one, self._all, self._detector, self._finder):
            if model is not None:
                model.close()
        self._one = self._all = self._detector = self._finder = self._follower = None
        self._open = False

    def __enter__(self) -> "FaceLandmarkerRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Frame:
    """One frame as an array, and as a MediaPipe image made only if MediaPipe's graph is used."""

    def __init__(self, rgb: np.ndarray, mediapipe) -> None:
        self.rgb, self._mediapipe, self._image = rgb, mediapipe, None

    @property
    def image(self):
        if self._image is None:
            mp = self._mediapipe()
            self._image = mp.Image(image_format=mp.ImageFormat.SRGB, data=self.rgb)
        return self._image


class MediaPipeLandmarker:
    """One MediaPipe FaceLandmarker in VIDEO mode, looking for up to ``num_faces``."""

    def __init__(self, model_path: Path, num_faces: int) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=num_faces,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._direct = _direct_call(self._landmarker)

    def detect(self, image, t_ms: int) -> RawFaces:
        if self._direct is not None:
            return self._direct(image, t_ms)
        return self._via_python_objects(image, t_ms)

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
        self._direct = None
        self._landmarker.close()


def _face_detector(model_path: Path):
    """MediaPipe's face detector (IMAGE mode: no state) with the landmarker bundle's own detector
    model, so that a look sees the faces the landmarker's detector would."""
    import zipfile

    from mediapipe.tasks.python import BaseOptions, vision

    with zipfile.ZipFile(model_path) as bundle:
        model = bundle.read("face_detector.tflite")
    options = vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_buffer=model), running_mode=vision.RunningMode.IMAGE,
        min_detection_confidence=LOOK_SCORE,
    )
    return vision.FaceDetector.create_from_options(options)


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


@functools.lru_cache(maxsize=16)
def _fields_dtype(struct, names: tuple[str, ...]) -> np.dtype:
    """A numpy view of ``names`` in a ctypes struct (built once: twice a frame otherwise)."""
    import ctypes

    types = dict(struct._fields_)
    # Described field by field: numpy cannot read the structs' string pointers from ctypes itself.
    return np.dtype({
        "names": list(names),
        "formats": [np.dtype(types[name]) for name in names],
        "offsets": [getattr(struct, name).offset for name in names],
        "itemsize": ctypes.sizeof(struct),
    })


def _struct_fields(pointer, count: int, names: tuple[str, ...]) -> np.ndarray:
    """(count, len(names)) float32 copy of the named numeric fields of a C array of structs."""
    import ctypes

    count = int(count)
    if count == 0 or not pointer:
        return np.zeros((0, len(names)), np.float32)
    dtype = _fields_dtype(pointer._type_, names)
    memory = (ctypes.c_char * (count * dtype.itemsize)).from_address(ctypes.addressof(pointer.contents))
    records = np.frombuffer(memory, dtype, count)
    return np.stack([records[name].astype(np.float32) for name in names], axis=1)
