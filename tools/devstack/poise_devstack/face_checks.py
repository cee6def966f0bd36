"""What the face model's tests share: a clip with two real faces in view at once.

With as many faces in view as ``max_faces``, MediaPipe stops detecting and follows each face from
the previous frame, so what it finds in a frame depends on the frames before: the case tracking
spans change, and the one a single-face recording never shows. Built from two recordings of
../shared/media side by side (the talking head is a test fixture only, see its SOURCES.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def two_faces_side_by_side(media_dir: Path, fps: float = 10.0) -> list[tuple[int, np.ndarray]]:
    """(t_ms, 640x360 RGB): the Pexels face on the left, a talking head on the right, on black,
    for as long as the shorter recording (5 s)."""
    import cv2
    from poise_gateway.decode import iter_frames

    left = [rgb for _, rgb in iter_frames(media_dir / "pexels_face_20s.mp4", fps, 640)]
    right = [rgb for _, rgb in iter_frames(media_dir / "talking_head_2.mp4", fps, 640)]
    frames = []
    for n, (a, b) in enumerate(zip(left, right)):
        canvas = np.zeros((360, 640, 3), np.uint8)
        canvas[90:270, :320] = cv2.resize(a, (320, 180))
        canvas[90:270, 400:580] = cv2.resize(b, (180, 180))
        frames.append((int(round(1000 * n / fps)), canvas))
    return frames
