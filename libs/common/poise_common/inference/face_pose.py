"""The facial transformation matrix (head pose) from a face's landmarks, as MediaPipe computes it.

MediaPipe's face landmarker fits its canonical face, weighted at 33 landmarks, to the frame's
landmarks seen through a pinhole camera (63 degrees vertically, near plane at 1), and gives the
similarity transform of that fit as a 4x4 matrix. ``FacePose`` redoes that fit in numpy for
frames whose landmarks come from outside MediaPipe's graph (``face_follower``), with the
canonical face and weights read from the landmarker bundle's own
``geometry_pipeline_metadata_landmarks.binarypb``. Against MediaPipe's own matrices the values
agree to 2e-5 (test: ``services/vision/tests/test_face_follower.py``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

import numpy as np

METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
# MediaPipe's default camera for the face landmarker's geometry.
_VERTICAL_FOV_DEGREES = 63.0
_NEAR = 1.0
# The canonical face has the 468 mesh landmarks; the 10 iris landmarks after them take no part.
_MESH_LANDMARKS = 468


class FacePose:
    """Fits the canonical face to a frame's landmarks (``matrix``)."""

    def __init__(self, canonical: np.ndarray, weights: np.ndarray) -> None:
        if canonical.shape != (3, _MESH_LANDMARKS) or weights.shape != (_MESH_LANDMARKS,):
            raise ValueError(f"expected a 3 x {_MESH_LANDMARKS} canonical face and its weights, got "
                             f"{canonical.shape} and {weights.shape}")
        # What the fit needs of the canonical face is the same for every frame: computed once.
        w = np.sqrt(weights.astype(np.float64))
        self._w, self._total = w, float((w * w).sum())
        self._sources = canonical.astype(np.float64) * w
        centre = (self._sources * w).sum(axis=1) / self._total
        self._centred = self._sources - np.outer(centre, w)
        self._centred_norm = float((self._centred * self._sources).sum())

    @classmethod
    def from_metadata(cls, data: bytes) -> "FacePose":
        """Read the canonical face and its landmark weights from the bundle's metadata (a
        ``GeometryPipelineMetadata`` protocol buffer: mesh in field 1, weights in field 2)."""
        vertices: list[np.ndarray] = []
        weights = np.zeros(_MESH_LANDMARKS)
        for number, _, value in _fields(data):
            if number == 1:
                # Mesh3d: vertex_buffer (field 3), 5 floats a vertex (x, y, z, u, v), packed or not.
                vertices += [np.frombuffer(v, "<f4") for n, _, v in _fields(value) if n == 3]
            elif number == 2:
                entry = {n: v for n, _, v in _fields(value)}
                weights[int(entry.get(1, 0))] = struct.unpack("<f", entry[2])[0] if 2 in entry else 0.0
        if not vertices:
            raise ValueError("face geometry metadata holds no canonical mesh")
        canonical = np.concatenate(vertices).reshape(-1, 5)[:, :3].T
        return cls(canonical, weights)

    def matrix(self, landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
        """4x4 float32 facial transformation matrix for one face's normalised landmarks
        (N >= 468, 3) on a ``width`` x ``height`` frame."""
        height_at_near = 2.0 * _NEAR * math.tan(0.5 * math.radians(_VERTICAL_FOV_DEGREES))
        width_at_near = width * height_at_near / height
        screen = landmarks[:_MESH_LANDMARKS].T.astype(np.float64)
        # Onto the near plane: y up, origin at the frame's centre; z scaled as x.
        screen[1] = 1.0 - screen[1]
        screen *= np.array([width_at_near, height_at_near, width_at_near])[:, None]
        screen[0] -= 0.5 * width_at_near
        screen[1] -= 0.5 * height_at_near
        depth_offset = screen[2].mean()
        # MediaPipe's two passes: a first scale from the flat landmarks, then a second from the
        # landmarks unprojected with the first; the matrix comes from both together.
        first = screen.copy()
        first[2] *= -1.0
        first_scale = np.linalg.norm(self._fit(first)[:3, 0])
        second_scale = np.linalg.norm(self._fit(_metric(screen, depth_offset, first_scale))[:3, 0])
        return self._fit(_metric(screen, depth_offset, first_scale * second_scale)).astype(np.float32)

    def _fit(self, targets: np.ndarray) -> np.ndarray:
        """Weighted similarity transform taking the canonical face onto ``targets`` (3 x 468):
        the weighted orthogonal Procrustes problem, reflections excluded."""
        targets = targets * self._w
        u, _, vt = np.linalg.svd(targets @ self._centred.T)
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            u[:, 2] *= -1.0
        rotation = u @ vt
        scale = float(np.einsum("ij,ij->", rotation @ self._centred, targets) / self._centred_norm)
        transform = np.eye(4)
        transform[:3, :3] = scale * rotation
        transform[:3, 3] = (targets - transform[:3, :3] @ self._sources) @ self._w / self._total
        return transform


def _metric(screen: np.ndarray, depth_offset: float, scale: float) -> np.ndarray:
    """Near-plane landmarks to metric space at ``scale``: depth moved and rescaled, x and y
    unprojected through it, z turned to a right-handed frame."""
    metric = screen.copy()
    metric[2] = (metric[2] - depth_offset + _NEAR) / scale
    metric[:2] *= metric[2] / _NEAR
    metric[2] *= -1.0
    return metric


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of a protocol buffer message, one level deep."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        else:
            raise ValueError(f"face geometry metadata: unsupported wire type {wire}")
        yield number, wire, value


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("face geometry metadata is truncated")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i
