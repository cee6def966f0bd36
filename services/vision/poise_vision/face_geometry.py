"""Turn one face's MediaPipe outputs into a :class:`FaceObservation`.

Pure functions over numbers: landmarks (478 points normalised to the frame, irises at
468-477), blendshape scores by name, and the 4x4 facial transformation matrix.

Directions are those of the image as recorded (a camera that does not mirror): image
left is the subject's right.

Head pose, in degrees:
- yaw: 0 when the face points at the camera; positive when it turns towards image right
  (the subject's left).
- pitch: 0 when the face points at the camera; positive when the chin lifts (face up).
- roll: 0 when the eyes are level; positive when the head tilts counter-clockwise in
  the image (the top of the head towards image left, the subject's right shoulder).

Angles are relative to the camera's optical axis. A face far off centre that looks into
the lens therefore reads a few degrees of yaw or pitch. Correcting that with the face's
position would need the real lens's field of view: MediaPipe places faces with a virtual
63-degree camera, which turned a frontal face at the edge of a portrait-lens clip into a
26-degree yaw, so no such correction is made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from poise_common.signals import FaceObservation

# Landmark indices of MediaPipe's face mesh. "Image-left" is the subject's right eye.
LEFT_EYE_CORNERS = (33, 133)  # outer, inner corner of the image-left eye
RIGHT_EYE_CORNERS = (362, 263)  # inner, outer corner of the image-right eye
LEFT_EYE_LIDS = (159, 145)  # upper, lower lid of the image-left eye
RIGHT_EYE_LIDS = (386, 374)
LEFT_IRIS_CENTRE = 468
RIGHT_IRIS_CENTRE = 473
LANDMARKS_WITH_IRISES = 478

# Iris offsets are in eye widths (corner to corner) and scaled so that +-1 is the
# farthest an iris centre travels: about a quarter of the eye width, i.e. an eye turned
# ~40 degrees (12 mm eyeball radius, ~30 mm eye opening).
GAZE_RANGE_EYE_WIDTHS = 0.25
# Looking straight ahead, the iris centre sits above the line through the eye corners,
# by 0.05-0.10 eye widths on every face of the test media: that is the vertical zero.
GAZE_Y_REST_EYE_WIDTHS = -0.07

# Eyes closed: lid gap below this share of the eye width (open eyes measure 0.2-0.4,
# blinks and squints under 0.1), or the eyeBlink blendshape at or above the blink level.
EYE_OPENNESS_MIN = 0.12
EYE_BLINK_CLOSED = 0.5

# Eye contact uses absolute limits, never the person's own median: someone who looks
# away the whole answer must not score as "mostly in contact". Beyond ~20 degrees of head
# turn a person cannot look into the lens without straining the eyes, and an iris offset
# of 0.4 (a tenth of the eye width) is an eye turned ~15 degrees off the lens.
HEAD_YAW_CONTACT_DEG = 20.0
HEAD_PITCH_CONTACT_DEG = 20.0
GAZE_X_CONTACT = 0.4
GAZE_Y_CONTACT = 0.4

_BLENDSHAPES_USED = (
    "mouthSmileLeft",
    "mouthSmileRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "jawOpen",
    "eyeBlinkLeft",
    "eyeBlinkRight",
)


def observe_face(
    landmarks: np.ndarray,
    blendshapes: Mapping[str, float],
    transform: np.ndarray,
    frame_size: tuple[int, int],
) -> FaceObservation:
    """One face in one frame.

    ``landmarks``: (N >= 478, 2 or 3) normalised x, y (z ignored). ``blendshapes``:
    MediaPipe's 52 scores by name. ``transform``: the 4x4 facial transformation matrix.
    ``frame_size``: (width, height) in pixels, to measure eye geometry in square units.
    """
    points = _pixel_points(landmarks, frame_size)
    scores = _checked_scores(blendshapes)
    yaw, pitch, roll = head_pose_deg(transform)
    gaze_x, gaze_y = iris_gaze(points)
    blink = max(scores["eyeBlinkLeft"], scores["eyeBlinkRight"])
    open_ = eyes_open(eye_openness(points), blink)
    return FaceObservation(
        yaw_deg=yaw,
        pitch_deg=pitch,
        roll_deg=roll,
        gaze_x=gaze_x,
        gaze_y=gaze_y,
        eyes_open=open_,
        eye_contact=is_eye_contact(yaw, pitch, gaze_x, gaze_y, eyes_are_open=open_),
        smile=(scores["mouthSmileLeft"] + scores["mouthSmileRight"]) / 2,
        brow_raise=max(scores["browInnerUp"], (scores["browOuterUpLeft"] + scores["browOuterUpRight"]) / 2),
        lip_press=(scores["mouthPressLeft"] + scores["mouthPressRight"]) / 2,
        lip_pucker=scores["mouthPucker"],
        jaw_open=scores["jawOpen"],
        blink=blink,
        box=face_box(landmarks),
    )


def head_pose_deg(transform: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the facial transformation matrix.

    Conventions in the module docstring. The rotation is decomposed as
    R = Ry(yaw) Rx(-pitch) Rz(roll) in MediaPipe's camera frame (x right, y up, z towards
    the viewer), so yaw stays meaningful when the head nods.
    """
    matrix = np.asarray(transform, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"expected a 4x4 matrix, got shape {matrix.shape}")
    rotation = _nearest_rotation(matrix[:3, :3])
    yaw = math.atan2(rotation[0, 2], rotation[2, 2])
    pitch = math.asin(float(np.clip(rotation[1, 2], -1.0, 1.0)))
    roll = math.atan2(rotation[1, 0], rotation[1, 1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def iris_gaze(points: np.ndarray) -> tuple[float, float]:
    """(gaze_x, gaze_y) of both eyes, each clipped to -1..1.

    Each iris centre is located in its eye's own frame: along the corner-to-corner axis
    (so head roll does not leak in) and perpendicular to it, in eye widths (so distance
    and foreshortening cancel). gaze_x: -1 image left .. 1 image right; gaze_y: -1 up ..
    1 down. Vertical gaze is meaningless when the eyes close: check :func:`eyes_open`.
    ``points`` are landmarks in pixels (see :func:`observe_face`).
    """
    offsets = [
        _iris_in_eye(points, LEFT_EYE_CORNERS, LEFT_IRIS_CENTRE),
        _iris_in_eye(points, RIGHT_EYE_CORNERS, RIGHT_IRIS_CENTRE),
    ]
    along = sum(o[0] for o in offsets) / 2
    across = sum(o[1] for o in offsets) / 2
    gaze_x = _clip_unit(along / GAZE_RANGE_EYE_WIDTHS)
    gaze_y = _clip_unit((across - GAZE_Y_REST_EYE_WIDTHS) / GAZE_RANGE_EYE_WIDTHS)
    return gaze_x, gaze_y


def eye_openness(points: np.ndarray) -> float:
    """Mean lid gap of the two eyes, as a share of each eye's width (pixels in)."""
    gaps = []
    for (outer, inner), (upper, lower) in ((LEFT_EYE_CORNERS, LEFT_EYE_LIDS), (RIGHT_EYE_CORNERS, RIGHT_EYE_LIDS)):
        width = float(np.linalg.norm(points[inner] - points[outer]))
        gaps.append(float(np.linalg.norm(points[lower] - points[upper])) / width if width > 0 else 0.0)
    return sum(gaps) / len(gaps)


def eyes_open(openness: float, blink: float) -> bool:
    """Both cues must agree: lids visibly apart and the blink blendshape low."""
    return openness >= EYE_OPENNESS_MIN and blink < EYE_BLINK_CLOSED


def is_eye_contact(yaw_deg: float, pitch_deg: float, gaze_x: float, gaze_y: float, *, eyes_are_open: bool) -> bool:
    """Head towards the camera and irises near the middle of the eyes, by fixed limits.

    Closed eyes are not in contact; summaries decide whether a blink interrupts contact.
    """
    return (
        eyes_are_open
        and abs(yaw_deg) <= HEAD_YAW_CONTACT_DEG
        and abs(pitch_deg) <= HEAD_PITCH_CONTACT_DEG
        and abs(gaze_x) <= GAZE_X_CONTACT
        and abs(gaze_y) <= GAZE_Y_CONTACT
    )


def face_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, w, h) of the landmarks' extent, clipped to the frame, in 0..1."""
    xy = np.clip(np.asarray(landmarks, dtype=np.float64)[:, :2], 0.0, 1.0)
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def _pixel_points(landmarks: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < LANDMARKS_WITH_IRISES or points.shape[1] < 2:
        raise ValueError(f"expected ({LANDMARKS_WITH_IRISES}, 2|3) landmarks with irises, got {points.shape}")
    width, height = frame_size
    # Normalised x and y have different units on a non-square frame; angles need pixels.
    return points[:, :2] * np.array([width, height], dtype=np.float64)


def _checked_scores(blendshapes: Mapping[str, float]) -> dict[str, float]:
    missing = [name for name in _BLENDSHAPES_USED if name not in blendshapes]
    if missing:
        raise ValueError(f"blendshapes missing: {', '.join(missing)}")
    return {name: float(blendshapes[name]) for name in _BLENDSHAPES_USED}


def _iris_in_eye(points: np.ndarray, corners: tuple[int, int], iris: int) -> tuple[float, float]:
    """Iris centre from the eye's midpoint: (along the eye to image right, across it downwards)."""
    a, b = points[corners[0]], points[corners[1]]
    if a[0] > b[0]:
        a, b = b, a
    axis = b - a
    width = float(np.linalg.norm(axis))
    if width == 0.0:
        return 0.0, 0.0
    axis = axis / width
    # Perpendicular pointing down the image (y grows downwards in pixels).
    normal = np.array([-axis[1], axis[0]])
    rel = points[iris] - (a + b) / 2
    return float(rel @ axis) / width, float(rel @ normal) / width


def _nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    # The upper 3x3 may carry scale and rounding; the closest orthonormal matrix removes both.
    u, _, vt = np.linalg.svd(matrix)
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        u[:, -1] = -u[:, -1]
        rotation = u @ vt
    return rotation


def _clip_unit(value: float) -> float:
    return max(-1.0, min(1.0, value))
