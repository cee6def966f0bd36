"""One face followed from frame to frame with the landmarker bundle's own models, outside
MediaPipe's graph.

MediaPipe's face landmarker runs its two models (5.4 ms a frame on one thread here) inside a
graph of calculators that hands each frame between two threads; the face model took 9.1 ms of
CPU a frame that way, and 7.8 ms found and followed outside it (bench/face_follower.py, the long
answer).
``FaceFollower`` runs the same two models (``face_landmarks_detector`` and ``face_blendshapes``
from the bundle) on LiteRT, one thread, and does what the graph does around them for one face in
VIDEO mode:

- the frame's region comes from the previous frame's landmarks before smoothing: their bounding
  box, turned so that the eye corners (33 and 263) lie level, made square and 1.5 times larger;
- the region is cut out with a perspective warp (bilinear, edges replicated) to 256 x 256, in
  [0, 1];
- the model's landmarks are projected back onto the frame; a presence score under 0.5 (after a
  sigmoid) means the face is lost;
- the landmarks are smoothed by a one-euro filter (min cutoff 0.05, beta 80, derivative cutoff 1,
  values scaled by the face's size in pixels, the rate from the frames' times);
- the blendshapes come from 146 of the smoothed landmarks in pixels, the matrix from all of them
  (``face_pose``).

It starts from a face the detector found (``start_from``, with ``face_finder``): on that frame
the landmarks are the model's own, as MediaPipe's smoothing has nothing to smooth them against.
On recordings, landmarks agree with MediaPipe's to a few hundredths of a pixel on average (1.5 px
at most), blendshapes to 0.0006 on average (0.1 at most), head pose to 0.4 degrees (test:
``services/vision/tests/test_face_follower.py``); they are not bit for bit MediaPipe's (another
build of the same kernels, float64 where the graph has float32), so the runner's ``FACE_METHOD``
names the follower.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from poise_common.inference.face_finder import level_rotation, quad_to_square
from poise_common.inference.face_pose import METADATA_MEMBER, FacePose
from poise_common.inference.faces import LANDMARKS, RawFaces

LANDMARKS_MODEL = "face_landmarks_detector.tflite"
BLENDSHAPES_MODEL = "face_blendshapes.tflite"
# The 146 landmarks the blendshape model reads, in its order (MediaPipe's face blendshapes graph).
BLENDSHAPE_LANDMARKS = np.array([
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66,
    67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145,
    146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176,
    178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285,
    288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334,
    336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387,
    388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474,
    475, 476, 477,
])
_CROP = 256
_REGION_SCALE = 1.5
_PRESENCE = 0.5
_LEFT_EYE_CORNER, _RIGHT_EYE_CORNER = 33, 263


class FaceFollower:
    """Follows one face through one stream's frames (in time order)."""

    def __init__(self, model_path: Path) -> None:
        # Imported here: only face workers load the runtime.
        from ai_edge_litert.interpreter import Interpreter

        with zipfile.ZipFile(model_path) as bundle:
            landmarks_model, blendshapes_model = bundle.read(LANDMARKS_MODEL), bundle.read(BLENDSHAPES_MODEL)
            self._pose = FacePose.from_metadata(bundle.read(METADATA_MEMBER))
        self._landmarks = Interpreter(model_content=landmarks_model, num_threads=1)
        self._blendshapes = Interpreter(model_content=blendshapes_model, num_threads=1)
        for model in (self._landmarks, self._blendshapes):
            model.allocate_tensors()
        outputs = self._landmarks.get_output_details()
        # MediaPipe reads the first output as the landmarks and the second as the presence score.
        if len(outputs) < 2 or [int(np.prod(o["shape"])) for o in outputs[:2]] != [LANDMARKS * 3, 1]:
            raise ValueError(f"{model_path}: {LANDMARKS_MODEL} does not give {LANDMARKS} landmarks and a presence score")
        self._landmarks_in = self._landmarks.get_input_details()[0]["index"]
        self._landmarks_out = [o["index"] for o in outputs[:2]]
        self._blendshapes_in = self._blendshapes.get_input_details()[0]["index"]
        self._blendshapes_out = self._blendshapes.get_output_details()[0]["index"]
        self._raw: np.ndarray | None = None  # the last frame's landmarks before smoothing
        self._shape: tuple[int, ...] = ()
        self._smoothing = _OneEuro()

    @property
    def following(self) -> bool:
        return self._raw is not None

    def stop(self) -> None:
        self._raw = None

    def start_from(self, rgb: np.ndarray, region: tuple[float, float, float, float, float], t_ms: int) -> RawFaces:
        """The face in a detector's ``region`` of this frame (``face_finder.region``), followed
        from here on (a fresh start); none where the landmark model sees no face there.

        As MediaPipe's landmarker does with a region that is not square: the crop is the square
        around it, and the landmarks are taken back out of the padding before they are projected.
        """
        self._shape = tuple(rgb.shape)
        height, width = self._shape[:2]
        x, y, w, h, rotation = region
        side = max(w * width, h * height)
        padding = ((1 - w * width / side) / 2, (1 - h * height / side) / 2)
        points = self._landmarks_in_crop(rgb, (x, y, side / width, side / height, rotation))
        if points is None:
            self.stop()
            return RawFaces.empty()
        points[:, 0] = (points[:, 0] - padding[0]) / (1 - 2 * padding[0])
        points[:, 1] = (points[:, 1] - padding[1]) / (1 - 2 * padding[1])
        points[:, 2] /= 1 - 2 * padding[0]
        self._raw = _projected(points, region)
        self._smoothing = _OneEuro()
        return self._measured(self._raw, t_ms)

    def follow(self, rgb: np.ndarray, t_ms: int) -> RawFaces:
        """The face on this frame (``RawFaces`` of one face), or none when it is lost, which
        stops following."""
        if self._raw is None:
            raise RuntimeError("no face to follow: start_from() first")
        if rgb.shape != self._shape:
            self.stop()
            return RawFaces.empty()
        height, width = self._shape[:2]
        region = _region(self._raw, width, height)
        points = self._landmarks_in_crop(rgb, region)
        if points is None:
            self.stop()
            return RawFaces.empty()
        self._raw = _projected(points, region)
        return self._measured(self._raw, t_ms)

    def _landmarks_in_crop(self, rgb: np.ndarray, region) -> np.ndarray | None:
        """The landmark model's (478, 3) landmarks in the crop (0..1), or None below presence."""
        height, width = rgb.shape[:2]
        self._landmarks.set_tensor(self._landmarks_in, _crop(rgb, region, width, height))
        self._landmarks.invoke()
        points, presence = (self._landmarks.get_tensor(i) for i in self._landmarks_out)
        if _sigmoid(float(presence.ravel()[0])) < _PRESENCE:
            return None
        return points.reshape(-1, 3).astype(np.float64) / _CROP

    def _measured(self, raw: np.ndarray, t_ms: int) -> RawFaces:
        """Smoothed landmarks, blendshapes and head pose from this frame's landmarks."""
        height, width = self._shape[:2]
        smoothed = self._smoothing.apply(t_ms, *_absolute(raw, width, height))
        landmarks = (smoothed / (width, height, width)).astype(np.float32)
        self._blendshapes.set_tensor(
            self._blendshapes_in, (landmarks[BLENDSHAPE_LANDMARKS, :2] * np.float32((width, height)))[None])
        self._blendshapes.invoke()
        blendshapes = self._blendshapes.get_tensor(self._blendshapes_out).reshape(1, -1).astype(np.float32)
        matrix = self._pose.matrix(landmarks, width, height)
        return RawFaces(landmarks[None], blendshapes, matrix[None])


def _region(landmarks: np.ndarray, width: int, height: int) -> tuple[float, float, float, float, float]:
    """(x centre, y centre, width, height, rotation) normalised: where to look on the next frame."""
    low, high = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
    rotation = level_rotation(landmarks[_LEFT_EYE_CORNER], landmarks[_RIGHT_EYE_CORNER], width, height)
    side = max((high[0] - low[0]) * width, (high[1] - low[1]) * height) * _REGION_SCALE
    centre = (low + high) / 2
    return float(centre[0]), float(centre[1]), side / width, side / height, rotation


def _crop(rgb: np.ndarray, region, width: int, height: int) -> np.ndarray:
    """The region as the model's (1, 256, 256, 3) float32 input in [0, 1]."""
    import cv2

    x, y, w, h, rotation = region
    corners = cv2.boxPoints(((x * width, y * height), (w * width, h * height), math.degrees(rotation)))
    pixels = quad_to_square(rgb, corners, _CROP, cv2.BORDER_REPLICATE)
    return (pixels.astype(np.float32) * np.float32(1 / 255))[None]


def _projected(points: np.ndarray, region) -> np.ndarray:
    """Landmarks in the crop (0..1) back onto the frame.

    z is scaled by the length of the crop's x axis in the frame's normalised coordinates, as
    MediaPipe's projection does: on a frame that is not square that length grows as the region
    turns (by 17 % at 25 degrees on 16:9), and so do MediaPipe's z and its head pose with them.
    """
    x, y, w, h, rotation = region
    cos, sin = math.cos(rotation), math.sin(rotation)
    px, py = points[:, 0] - 0.5, points[:, 1] - 0.5
    z_scale = math.hypot(w * cos, h * sin)
    return np.stack([(cos * px - sin * py) * w + x, (sin * px + cos * py) * h + y, points[:, 2] * z_scale], axis=1)


def _absolute(landmarks: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float]:
    """Landmarks in pixels (z as x) and the face's size: the mean of its extents."""
    pixels = landmarks * (width, height, width)
    extent = pixels[:, :2].max(axis=0) - pixels[:, :2].min(axis=0)
    return pixels, float(extent.sum() / 2)


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


class _OneEuro:
    """MediaPipe's one-euro filter over every coordinate at once, as its landmark smoothing
    configures it for faces."""

    MIN_CUTOFF, BETA, DERIVATIVE_CUTOFF = 0.05, 80.0, 1.0

    def __init__(self) -> None:
        self._rate = 30.0  # MediaPipe's initial frames a second, until two frames' times give one
        self._last_ns: int | None = None
        self._value: np.ndarray | None = None
        self._raw: np.ndarray | None = None
        self._speed: np.ndarray | None = None

    def apply(self, t_ms: int, value: np.ndarray, size: float) -> np.ndarray:
        t_ns = int(t_ms) * 1_000_000
        # A face too small to scale by, or a time out of order, passes unfiltered (as in MediaPipe).
        if size < 1e-6 or (self._last_ns is not None and self._last_ns >= t_ns):
            return value
        # MediaPipe takes the rate from two times only when neither is zero.
        if self._last_ns and t_ns:
            self._rate = 1e9 / (t_ns - self._last_ns)
        self._last_ns = t_ns
        if self._value is None or self._raw is None or self._speed is None:
            self._value, self._raw, self._speed = value, value, np.zeros_like(value)
            return value
        speed = (value - self._raw) / size * self._rate
        self._speed = self._speed + self._alpha(self.DERIVATIVE_CUTOFF) * (speed - self._speed)
        alpha = self._alpha(self.MIN_CUTOFF + self.BETA * np.abs(self._speed))
        self._value = alpha * value + (1.0 - alpha) * self._value
        self._raw = value
        return self._value

    def _alpha(self, cutoff):
        return 1.0 / (1.0 + self._rate / (2 * math.pi * cutoff))
