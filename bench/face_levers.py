"""Speed levers for the face model that change its features, weighed on the long answer.

The default (10 frames per second; the main face followed from frame to frame within spans of
``vision.face_span_frames``, the whole frame looked at for another face every 5 frames) against:
MediaPipe's detector on every frame (what looking for 2 faces with 1 in view does, and the
default until 2026-11-27: each frame's landmarks then come from the detector's coarse box),
sampling 5 frames per second, and the frames as decoded, without the JPEG round trip they take
on the bus in both modes (what skipping it in embedded mode would save, and change). For each:
the face model's CPU seconds (and the JPEG round trip's, where frames take it), how every vision
signal moved, how far the landmarks are from the default's (pixels, mean over the frames where
both found the one face; same frame rate only), and the landmarks' frame-to-frame jitter (median
second difference of 8 points that move with the head alone: eye corners, nose, between the
eyes; pixels) and the blendshapes' mean step from frame to frame. Prints and saves
bench/results/face_levers.json.

    python bench/face_levers.py [--repeats 4]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import bench_input, machine, now_utc, save  # noqa: E402

# name: (frames per second, how faces are found, whether frames take the JPEG round trip)
DEFAULT = "default (10 fps)"
VARIANTS = {
    DEFAULT: (10.0, "follow", True),
    "detector every frame": (10.0, "detect", True),
    "5 fps": (5.0, "follow", True),
    "no JPEG round trip": (10.0, "follow", False),
}
RIGID_POINTS = (1, 4, 6, 33, 133, 168, 263, 362)
SIGNALS = ("face_presence", "multiple_faces_ratio", "eye_contact_ratio", "smile_ratio", "brow_raise_ratio",
           "lip_press_ratio", "blink_rate_per_min", "head_movement_deg_per_s", "head_yaw_sd_deg")


def run(path: Path, fps: float, mode: str, jpeg: bool) -> tuple[dict, list]:
    """One variant's figures, and its faces frame by frame."""
    import mediapipe as mp
    import numpy as np

    from poise_common.behaviour.vision_summary import summarise_vision
    from poise_common.inference.faces import FaceLandmarkerRunner, MediaPipeLandmarker, decode_jpeg_rgb
    from poise_common.settings import PoiseSettings
    from poise_gateway.decode import encode_jpeg, iter_frames
    from poise_vision.face_tracker import MainFace

    settings = PoiseSettings()
    vision, quality = settings.vision, settings.gateway.jpeg_quality
    frames = list(iter_frames(path, fps, 640))
    round_trip = time.process_time()
    if jpeg:
        frames = [(t, decode_jpeg_rgb(encode_jpeg(rgb, quality))) for t, rgb in frames]
    round_trip = time.process_time() - round_trip
    main = MainFace()
    cpu = time.process_time()
    if mode == "follow":
        with FaceLandmarkerRunner(vision.face_model_path, vision.max_faces) as runner:
            raws = []
            for n, (t, rgb) in enumerate(frames):
                if n % vision.face_span_frames == 0:
                    runner.start_over()
                raws.append(runner.detect(rgb, int(round(t * 1000))))
    else:
        landmarker = MediaPipeLandmarker(vision.face_model_path, vision.max_faces)
        raws = [landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), int(round(t * 1000)))
                for t, rgb in frames]
        landmarker.close()
    cpu = time.process_time() - cpu
    observations = [(t, *main.observe(raw, (rgb.shape[1], rgb.shape[0]), t)) for (t, rgb), raw in zip(frames, raws)]
    signals = summarise_vision(observations, fps)
    size = np.array([frames[0][1].shape[1], frames[0][1].shape[0]])
    points = np.stack([raw.landmarks[0][list(RIGID_POINTS), :2] * size for raw in raws if raw.count == 1])
    jitter = np.abs(points[2:] - 2 * points[1:-1] + points[:-2])
    shapes = np.stack([raw.blendshapes[0] for raw in raws if raw.count == 1])
    return {"frames": len(frames), "face_model_cpu_s": round(cpu, 3), "jpeg_round_trip_cpu_s": round(round_trip, 3),
            "jitter_px_median": round(float(np.median(jitter)), 3),
            "blendshape_step_mean": round(float(np.abs(np.diff(shapes, axis=0)).mean()), 4),
            "signals": {name: getattr(signals, name) for name in SIGNALS}}, [raw.landmarks * (*size, size[0]) for raw in raws]


def landmarks_apart_px(landmarks: list, default: list) -> float | None:
    """Mean distance (pixels, x and y) between two runs' landmarks, over the frames where both
    found one face; None where the runs sampled other frames."""
    if len(landmarks) != len(default):
        return None
    both = [(a[0, :, :2], b[0, :, :2]) for a, b in zip(landmarks, default) if len(a) == 1 and len(b) == 1]
    if not both:
        return None
    import numpy as np

    return round(float(np.mean([np.linalg.norm(a - b, axis=1).mean() for a, b in both])), 3)


def main() -> None:
    _, path = bench_input(__doc__)
    started = machine()
    runs, faces = {}, {}
    for name, variant in VARIANTS.items():
        runs[name], faces[name] = run(path, *variant)
    base = runs[DEFAULT]
    for name, figures in runs.items():
        figures["cpu_vs_default"] = round(figures["face_model_cpu_s"] / base["face_model_cpu_s"], 3)
        figures["landmarks_from_default_px"] = landmarks_apart_px(faces[name], faces[DEFAULT])
        figures["signal_changes"] = {
            key: round(value - base["signals"][key], 4)
            for key, value in figures["signals"].items()
            if value is not None and base["signals"][key] is not None and value != base["signals"][key]
        }
        print(f"{name:<26} {figures['frames']:>4} frames, face model {figures['face_model_cpu_s']:.2f} CPU s "
              f"({figures['cpu_vs_default']:.2f}x), JPEG round trip {figures['jpeg_round_trip_cpu_s']:.2f} CPU s, "
              f"landmarks {figures['landmarks_from_default_px']} px from the default, jitter {figures['jitter_px_median']:.2f} px, blendshape step {figures['blendshape_step_mean']:.4f}; signal changes: {figures['signal_changes'] or 'none'}")
    saved = save("face_levers", {"benchmark": "face_levers", "when": now_utc(), "machine": started, "runs": runs})
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
