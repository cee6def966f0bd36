"""The face followed outside MediaPipe's graph (``FaceFollower``) against MediaPipe's graph alone,
on the long answer's frames as the pipeline sees them (10 frames per second, 640 px wide, through
JPEG, the main face followed within spans of ``vision.face_span_frames``).

For each way, in interleaved rounds: the face model's CPU seconds for the answer and per frame.
Then how far the follower's faces are from MediaPipe's (landmarks in pixels, blendshapes, head
pose in degrees) and how every vision signal moved. Prints and saves
bench/results/face_follower.json.

    python bench/face_follower.py [--rounds 3]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from face_levers import SIGNALS  # noqa: E402
from harness import bench_input, machine, now_utc, save  # noqa: E402

WAYS = {"mediapipe graph": False, "follower": True}


def pipeline_frames(path: Path) -> list:
    import cv2

    from poise_common.inference.faces import decode_jpeg_rgb
    from poise_gateway.decode import iter_frames

    quality = [int(cv2.IMWRITE_JPEG_QUALITY), 85]
    return [(t, decode_jpeg_rgb(cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), quality)[1].tobytes()))
            for t, rgb in iter_frames(path, 10.0, 640)]


def faces(frames: list, follower: bool) -> tuple[list, float]:
    from poise_common.inference.faces import FaceLandmarkerRunner
    from poise_common.settings import PoiseSettings

    vision = PoiseSettings().vision
    with FaceLandmarkerRunner(vision.face_model_path, vision.max_faces, follower=follower) as runner:
        cpu = time.process_time()
        raws = []
        for n, (t, rgb) in enumerate(frames):
            if n % vision.face_span_frames == 0:
                runner.start_over()
            raws.append(runner.detect(rgb, int(round(t * 1000))))
        return raws, time.process_time() - cpu


def offsets(frames: list, mediapipe: list, followed: list) -> dict:
    import numpy as np

    from poise_vision.face_geometry import head_pose_deg

    height, width = frames[0][1].shape[:2]
    pairs = [(a, b) for a, b in zip(mediapipe, followed) if a.count and a.count == b.count]
    pixels = np.array([(np.abs(a.landmarks - b.landmarks)[..., :2] * (width, height)).max(axis=-1) for a, b in pairs])
    pose = [np.abs(np.subtract(head_pose_deg(a.matrices[0]), head_pose_deg(b.matrices[0]))).max() for a, b in pairs]
    blend = np.array([np.abs(a.blendshapes - b.blendshapes) for a, b in pairs])
    return {
        "frames_with_faces": len(pairs),
        "face_count_differs": sum(a.count != b.count for a, b in zip(mediapipe, followed)),
        "landmarks_px_mean": round(float(pixels.mean()), 4),
        "landmarks_px_frame_max_p99": round(float(np.percentile(pixels.max(axis=(1, 2)), 99)), 3),
        "landmarks_px_max": round(float(pixels.max()), 3),
        "blendshapes_mean": round(float(blend.mean()), 5),
        "blendshapes_max": round(float(blend.max()), 4),
        "head_pose_deg_max": round(float(max(pose)), 3),
    }


def signals(frames: list, raws: list) -> dict:
    from poise_common.behaviour.vision_summary import summarise_vision
    from poise_vision.face_tracker import MainFace

    main = MainFace()
    observations = [(t, *main.observe(raw, (rgb.shape[1], rgb.shape[0]), t)) for (t, rgb), raw in zip(frames, raws)]
    summary = summarise_vision(observations, 10.0)
    return {name: getattr(summary, name) for name in SIGNALS}


def main() -> None:
    args, path = bench_input(__doc__, lambda parser: parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of both ways (default 3)"))
    started = machine()
    frames = pipeline_frames(path)
    cpu: dict[str, list[float]] = {name: [] for name in WAYS}
    raws: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, follower in WAYS.items():
            raws[name], seconds = faces(frames, follower)
            cpu[name].append(round(seconds, 3))
    ways = {}
    for name in WAYS:
        mean = statistics.mean(cpu[name])
        ways[name] = {"cpu_s": cpu[name], "cpu_s_mean": round(mean, 3), "cpu_ms_per_frame": round(mean / len(frames) * 1e3, 3),
                      "signals": signals(frames, raws[name])}
        print(f"{name:<16} face model {mean:.2f} CPU s for {len(frames)} frames ({ways[name]['cpu_ms_per_frame']:.2f} ms a frame); "
              f"rounds {cpu[name]}")
    base, followed = ways["mediapipe graph"], ways["follower"]
    saved_cpu = base["cpu_s_mean"] - followed["cpu_s_mean"]
    agreement = offsets(frames, raws["mediapipe graph"], raws["follower"])
    changes = {key: round(value - base["signals"][key], 4) for key, value in followed["signals"].items()
               if value is not None and base["signals"][key] is not None and value != base["signals"][key]}
    print(f"follower saves {saved_cpu:.2f} CPU s ({saved_cpu / base['cpu_s_mean']:.1%} of the face model)")
    print(f"agreement: {agreement}")
    print(f"signal changes: {changes or 'none'}")
    result = {"benchmark": "face_follower", "when": now_utc(), "machine": started, "frames": len(frames),
              "ways": ways, "cpu_saved_s": round(saved_cpu, 3), "agreement": agreement, "signal_changes": changes}
    print(f"saved {save('face_follower', result)}")


if __name__ == "__main__":
    main()
