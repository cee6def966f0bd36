"""Faces found on a whole frame with the landmarker bundle's own detector, outside MediaPipe's graph.

``FaceFinder`` runs ``face_detector.tflite`` (BlazeFace, short range) on LiteRT and does what
MediaPipe's face detector graph does around it: the frame letterboxed into 128 x 128 (edges
black) in [-1, 1], the 896 anchors' boxes and six keypoints decoded, scores through a sigmoid,
boxes that overlap by more than 0.3 (intersection over union) merged into their score-weighted
mean, and everything projected back onto the frame. ``region`` turns a face into the region
MediaPipe's landmarker looks at for it (turned by the eyes, 1.5 times larger).
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DETECTOR_MODEL = "face_detector.tflite"
_INPUT = 128
_SCORE_CLIP = 100.0
_OVERLAP = 0.3
_REGION_SCALE = 1.5


@dataclass(frozen=True)
class FoundFace:
    """One face on a frame, normalised to the frame: box (x min, y min, width, height) and six
    keypoints (eyes, nose tip, mouth, ear tragions), as MediaPipe's detector gives them."""

    score: float
    box: tuple[float, float, float, float]
    keypoints: np.ndarray  # (6, 2)


def _anchors() -> np.ndarray:
    """(896, 2) anchor centres of the short-range detector: 2 anchors a cell on the 16 x 16 grid
    (stride 8), 6 a cell on the 8 x 8 grid (three layers of stride 16); every anchor 1 x 1."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        for y in range(grid):
            for x in range(grid):
                centres += [((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell
    return np.array(centres)


class FaceFinder:
    """The detector on whole frames (no state between frames)."""

    def __init__(self, model_path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with zipfile.ZipFile(model_path) as bundle:
            model = bundle.read(DETECTOR_MODEL)
        self._model = Interpreter(model_content=model, num_threads=1)
        self._model.allocate_tensors()
        outputs = {int(np.prod(o["shape"])): o["index"] for o in self._model.get_output_details()}
        if set(outputs) != {896 * 16, 896}:
            raise ValueError(f"{model_path}: {DETECTOR_MODEL} does not give 896 boxes and their scores")
        self._input = self._model.get_input_details()[0]["index"]
        self._boxes, self._scores = outputs[896 * 16], outputs[896]
        self._anchors = _anchors()

    def find(self, rgb: np.ndarray, *min_scores: float) -> list[list[FoundFace]]:
        """The faces on a frame scoring at least each of ``min_scores`` (one list for each, best
        first): one run of the model, merged once per threshold as MediaPipe's graph would."""
        import cv2

        height, width = rgb.shape[:2]
        side = max(width, height)
        # The whole frame, padded with black to a square around its centre.
        corners = np.array([[-(side - width) / 2, (height + side) / 2], [-(side - width) / 2, (height - side) / 2],
                            [(width + side) / 2, (height - side) / 2], [(width + side) / 2, (height + side) / 2]],
                           np.float32)
        pixels = quad_to_square(rgb, corners, _INPUT, cv2.BORDER_CONSTANT)
        self._model.set_tensor(self._input, (pixels.astype(np.float32) * np.float32(2 / 255) - 1)[None])
        self._model.invoke()
        raw = self._model.get_tensor(self._boxes).reshape(-1, 16).astype(np.float64)
        logits = self._model.get_tensor(self._scores).reshape(-1).astype(np.float64)
        scores = 1 / (1 + np.exp(-np.clip(logits, -_SCORE_CLIP, _SCORE_CLIP)))
        # Decoded in the square's coordinates (0..1): box centre and size, keypoints.
        centres = raw[:, :2] / _INPUT + self._anchors
        sizes = raw[:, 2:4] / _INPUT
        keypoints = raw[:, 4:].reshape(-1, 6, 2) / _INPUT + self._anchors[:, None, :]
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)  # x0, y0, x1, y1
        # Back onto the frame, normalised.
        scale = np.array([side / width, side / height])
        offset = np.array([(width - side) / 2 / width, (height - side) / 2 / height])
        boxes = boxes * np.tile(scale, 2) + np.tile(offset, 2)
        keypoints = keypoints * scale + offset
        return [_merged(scores, boxes, keypoints, threshold) for threshold in min_scores]

    def close(self) -> None:
        self._model = None


def _merged(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, min_score: float) -> list[FoundFace]:
    """MediaPipe's weighted non-maximum suppression: the best box and every box overlapping it by
    more than 0.3 become one face, their boxes and keypoints averaged by score."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= min_score]
    faces = []
    while order:
        best = boxes[order[0]]
        overlaps = [_iou(best, boxes[i]) > _OVERLAP for i in order]
        group = [i for i, overlapping in zip(order, overlaps) if overlapping]
        rest = [i for i, overlapping in zip(order, overlaps) if not overlapping]
        if not group:  # a box of no area overlaps nothing, itself included: MediaPipe stops there
            break
        weights = scores[group]
        box = weights @ boxes[group] / weights.sum()
        points = np.einsum("i,ijk->jk", weights, keypoints[group]) / weights.sum()
        faces.append(FoundFace(float(scores[order[0]]), (box[0], box[1], box[2] - box[0], box[3] - box[1]), points))
        order = rest
    return faces


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def quad_to_square(rgb: np.ndarray, corners: np.ndarray, side: int, border: int) -> np.ndarray:
    """The quadrilateral ``corners`` of ``rgb`` (bottom left, top left, top right, bottom right, in
    pixels, as ``cv2.boxPoints`` gives them) warped onto a ``side`` x ``side`` square, bilinear,
    with OpenCV's ``border`` mode outside the frame: how MediaPipe cuts a model's input out."""
    import cv2

    target = np.array([[0, side], [0, 0], [side, 0], [side, side]], np.float32)
    warp = cv2.getPerspectiveTransform(np.asarray(corners, np.float32), target)
    return cv2.warpPerspective(rgb, warp, (side, side), flags=cv2.INTER_LINEAR, borderMode=border)


def region(face: FoundFace, width: int, height: int) -> tuple[float, float, float, float, float]:
    """(x centre, y centre, width, height, rotation), normalised: where MediaPipe's landmarker
    looks for the landmarks of a face its detector found (turned so that the eyes lie level,
    1.5 times the box)."""
    x, y, w, h = face.box
    rotation = level_rotation(face.keypoints[0], face.keypoints[1], width, height)
    return x + w / 2, y + h / 2, w * _REGION_SCALE, h * _REGION_SCALE, rotation


def level_rotation(start: np.ndarray, end: np.ndarray, width: int, height: int) -> float:
    """The rotation (radians, in -pi..pi) that lays the line from ``start`` to ``end`` (normalised
    points) level on a ``width`` x ``height`` frame, as MediaPipe's regions are turned."""
    (x0, y0), (x1, y1) = start[:2] * (width, height), end[:2] * (width, height)
    rotation = -math.atan2(-(y1 - y0), x1 - x0)
    return rotation - 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
