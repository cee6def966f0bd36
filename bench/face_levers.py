"""Speed levers for the face model that would change its features, weighed on the long answer.

The default (10 frames per second, up to 2 faces) against: looking for 1 face only (MediaPipe
then runs its face detector only when tracking is lost, instead of on every frame while fewer
faces than asked for are tracked), and sampling 5 frames per second. For each: the face
model's CPU seconds per media second and how every vision signal moved. Prints and saves
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

VARIANTS = {"default (10 fps, 2 faces)": (10.0, 2), "1 face": (10.0, 1), "5 fps": (5.0, 2)}
SIGNALS = ("face_presence", "multiple_faces_ratio", "eye_contact_ratio", "smile_ratio", "brow_raise_ratio",
           "lip_press_ratio", "blink_rate_per_min", "head_movement_deg_per_s", "head_yaw_sd_deg")


def run(path: Path, fps: float, faces: int) -> dict:
    import cv2

    from poise_common.behaviour.vision_summary import summarise_vision
    from poise_common.inference.faces import FaceLandmarkerRunner, decode_jpeg_rgb
    from poise_common.settings import PoiseSettings
    from poise_gateway.decode import iter_frames
    from poise_vision.face_tracker import MainFace

    quality = [int(cv2.IMWRITE_JPEG_QUALITY), 85]
    frames = [(t, decode_jpeg_rgb(cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), quality)[1].tobytes()))
              for t, rgb in iter_frames(path, fps, 640)]
    runner = FaceLandmarkerRunner(PoiseSettings().vision.face_model_path, faces)
    main = MainFace()
    cpu = time.process_time()
    raws = [runner.detect(rgb, int(round(t * 1000))) for t, rgb in frames]
    cpu = time.process_time() - cpu
    runner.close()
    observations = [(t, *main.observe(raw, (rgb.shape[1], rgb.shape[0]), t)) for (t, rgb), raw in zip(frames, raws)]
    signals = summarise_vision(observations, fps)
    return {"frames": len(frames), "face_model_cpu_s": round(cpu, 3),
            "signals": {name: getattr(signals, name) for name in SIGNALS}}


def main() -> None:
    _, path = bench_input(__doc__)
    started = machine()
    runs = {name: run(path, fps, faces) for name, (fps, faces) in VARIANTS.items()}
    base = runs["default (10 fps, 2 faces)"]
    for name, figures in runs.items():
        figures["cpu_vs_default"] = round(figures["face_model_cpu_s"] / base["face_model_cpu_s"], 3)
        figures["signal_changes"] = {
            key: round(value - base["signals"][key], 4)
            for key, value in figures["signals"].items()
            if value is not None and base["signals"][key] is not None and value != base["signals"][key]
        }
        print(f"{name:<26} {figures['frames']:>4} frames, face model {figures['face_model_cpu_s']:.2f} CPU s "
              f"({figures['cpu_vs_default']:.2f}x); signal changes: {figures['signal_changes'] or 'none'}")
    saved = save("face_levers", {"benchmark": "face_levers", "when": now_utc(), "machine": started, "runs": runs})
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
