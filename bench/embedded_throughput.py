"""Embedded pipeline throughput on a long real answer: media seconds per wall second.

Prints and saves (bench/results/embedded_throughput.json):
- end to end: `poise score` in a fresh process (wall, peak memory), and the scoring wall
  time once the services are up (model loading is a fixed start-up cost, reported apart);
- per stage, each run alone on the same input: CPU seconds and wall seconds for decode,
  face model, VAD, prosody, speech recognition, NLP and fusion, and their sum.

    python bench/embedded_throughput.py [--repeats 4] [--fps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from long_answer import build_long_answer  # noqa: E402

RESULTS = BENCH / "results"


@contextmanager
def clock(figures: dict, stage: str):
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    figures[stage] = {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}


def e2e_child(path: Path, out: Path) -> None:
    """Runs in a fresh process: start the embedded services, score once, report."""
    from poise.embedded import EmbeddedPoise, uploads_for
    from poise_common.settings import PoiseSettings

    async def run() -> dict:
        started = time.perf_counter()
        async with EmbeddedPoise(PoiseSettings()) as poise:
            ready = time.perf_counter()
            cpu = time.process_time()
            card = await poise.score(uploads_for([path], None))
            done = time.perf_counter()
            return {
                "startup_s": round(ready - started, 3),
                "scoring_wall_s": round(done - ready, 3),
                "scoring_cpu_s": round(time.process_time() - cpu, 3),
                "duration_s": card["answers"][0]["duration_s"],
                "words": card["answers"][0]["signals"]["nlp"]["word_count"],
            }

    figures = asyncio.run(run())
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out.write_text(json.dumps(figures))


def stages(path: Path, fps: float) -> dict:
    import cv2
    import numpy as np

    from poise_audio.analysis import analyse_audio
    from poise_audio.asr import create_recognizer
    from poise_audio.prosody import measure_prosody
    from poise_audio.vad import detect_speech
    from poise_common.behaviour.vision_summary import summarise_vision
    from poise_common.settings import PoiseSettings
    from poise_gateway.decode import iter_audio, iter_frames
    from poise_nlp.features import analyse_transcript
    from poise_vision.face_tracker import FaceTracker

    settings = PoiseSettings()
    figures: dict = {}
    with clock(figures, "decode_video"):
        frames = list(iter_frames(path, fps, settings.gateway.frame_width))
    with clock(figures, "jpeg_roundtrip"):
        for _, rgb in frames:
            ok, jpeg = cv2.imencode(".jpg", rgb, [int(cv2.IMWRITE_JPEG_QUALITY), settings.gateway.jpeg_quality])
            cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    with clock(figures, "decode_audio"):
        pcm = b"".join(chunk for _, chunk in iter_audio(path, settings.gateway.audio_chunk_s))
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    tracker = FaceTracker(settings.vision.face_model_path, settings.vision.max_faces)
    observations = []
    with clock(figures, "face_model"):
        for t_s, rgb in frames:
            count, face = tracker.observe(rgb, t_s)
            observations.append((t_s, count, face))
    tracker.close()
    with clock(figures, "vad"):
        speech = detect_speech(samples, 16000, settings.audio.vad_aggressiveness)
    with clock(figures, "prosody"):
        measure_prosody(samples, 16000, speech)
    recognizer = create_recognizer(settings.audio)
    recognizer.transcribe(samples[:16000])  # load the model outside the timed region
    with clock(figures, "speech_recognition"):
        transcript = recognizer.transcribe(samples)
    recognizer.close()
    with clock(figures, "nlp"):
        analyse_transcript(transcript, "Tell us about a time you changed someone's mind.")
    with clock(figures, "fusion_summaries"):
        summarise_vision(observations, fps)
        analyse_audio(samples, 16000, transcript, settings.audio)
    figures["_frames"] = len(frames)
    return figures


def main() -> None:
    from poise_common.native_stderr import filter_native_stderr

    filter_native_stderr()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="copies of the 19.7 s clip (4 = 79 s)")
    parser.add_argument("--fps", type=float, default=None, help="frame sampling rate (default: the setting)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        filter_native_stderr()
        e2e_child(args.child, args.out)
        return

    from poise_common.settings import PoiseSettings

    fps = args.fps or PoiseSettings().gateway.sample_fps
    path = build_long_answer(args.repeats)
    env = {**os.environ, "POISE_GATEWAY__SAMPLE_FPS": str(fps)}
    with tempfile.TemporaryDirectory() as home:
        env["POISE_HOME"] = home
        out = Path(home) / "e2e.json"
        wall = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", str(path), "--out", str(out)], env=env, check=True)
        process_wall = time.perf_counter() - wall
        e2e = json.loads(out.read_text())
    e2e["process_wall_s"] = round(process_wall, 3)
    per_stage = stages(path, fps)
    frames = per_stage.pop("_frames")
    model_stages = ("face_model", "vad", "prosody", "speech_recognition")
    model_cpu = sum(per_stage[s]["cpu_s"] for s in model_stages)
    duration = e2e["duration_s"]
    result = {
        "benchmark": "embedded_throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "input": {"file": path.name, "duration_s": duration, "width": 640, "height": 360, "sample_fps": fps,
                  "frames_analysed": frames, "words": e2e["words"]},
        "end_to_end": e2e,
        "realtime_factor": round(duration / e2e["scoring_wall_s"], 2),
        "realtime_factor_with_startup": round(duration / e2e["process_wall_s"], 2),
        "stages": {name: {**v, "media_s_per_wall_s": round(duration / v["wall_s"], 1) if v["wall_s"] else None}
                   for name, v in per_stage.items()},
        "model_cpu_s": round(model_cpu, 3),
        "all_stages_cpu_s": round(sum(v["cpu_s"] for v in per_stage.values()), 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embedded_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"input: {duration:.1f} s of 640x360 video, {frames} frames sampled at {fps:g} fps, {e2e['words']} words")
    print(f"embedded scoring: {e2e['scoring_wall_s']:.2f} s wall -> {result['realtime_factor']}x real time "
          f"(with start-up {e2e['startup_s']:.2f} s: {result['realtime_factor_with_startup']}x); "
          f"peak memory {e2e['peak_rss_mb']:.0f} MB")
    print(f"{'stage':<20}{'wall s':>9}{'cpu s':>9}{'media s / wall s':>18}")
    for name, v in result["stages"].items():
        print(f"{name:<20}{v['wall_s']:>9.3f}{v['cpu_s']:>9.3f}{v['media_s_per_wall_s'] or 0:>18.1f}")
    print(f"model compute (CPU s): {model_cpu:.2f}; all stages (CPU s): {result['all_stages_cpu_s']:.2f}")
    print(f"saved {RESULTS / 'embedded_throughput.json'}")


if __name__ == "__main__":
    main()
