"""One answer's face model stage on 1, 2, ... lanes (``vision.face_lanes``): media seconds per
wall second, and whether the faces are exactly those of one lane.

Every sampled frame of the long answer goes, as JPEG, through the in-process backend's face
stream, all submitted at once as the vision service does (which keeps ``depth`` frames in
flight); timed from the first submission to the last frame's faces. Also the two-face clip, on
which both faces are followed. Every span starts over, so every lane count must give the same
faces ("exact"). Prints and saves bench/results/face_lanes.json.

    python bench/face_lanes.py [--repeats 4] [--lanes 1 2 4] [--runs 2]
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import nullcontext
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import bench_input, machine, now_utc, save  # noqa: E402

MEDIA = BENCH.parent.parent / "shared" / "media"


def _arguments(parser) -> None:
    from poise_common.cpus import usable_cpus

    every = sorted({1, 2, min(4, usable_cpus())})
    parser.add_argument("--lanes", type=int, nargs="+", default=every, help="lane counts to run (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each lane count, interleaved; the best is kept")


def answer_jpegs(path: Path) -> list[tuple[int, bytes]]:
    """The answer's sampled frames as the gateway puts them on the bus: (ms, JPEG) at the default
    settings."""
    from poise_common.settings import PoiseSettings
    from poise_gateway.decode import encode_jpeg, iter_frames

    gateway = PoiseSettings().gateway
    return [(int(round(t * 1000)), encode_jpeg(rgb, gateway.jpeg_quality))
            for t, rgb in iter_frames(path, gateway.sample_fps, gateway.frame_width)]


def through_lanes(frames: list[tuple[int, bytes]], lanes: int, watch=nullcontext) -> tuple[dict, list]:
    """The frames through ``lanes`` lanes: wall and CPU seconds, and their faces. ``watch()`` gives
    a context manager held around the frames' passage alone (``ThreadClock``: which thread spent it)."""
    from poise_common.inference.backend import FACE
    from poise_common.inference.local import LocalBackend
    from poise_common.settings import PoiseSettings

    async def scenario():
        backend = LocalBackend(PoiseSettings(vision={"face_lanes": lanes}))
        await backend.start({FACE})
        stream = backend.face_stream("bench")
        wall, cpu = time.perf_counter(), time.process_time()
        with watch():
            faces = await asyncio.gather(*(stream.submit(jpeg, t_ms) for t_ms, jpeg in frames))
        figures = {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}
        await stream.close()
        await backend.stop()
        return figures, faces

    return asyncio.run(scenario())


def measure(name: str, frames: list[tuple[int, bytes]], duration_s: float, lane_counts: list[int], runs: int) -> dict:
    from poise_common.inference.face_lanes import same_faces

    best: dict[int, dict] = {}
    reference = None
    for _ in range(runs):
        for lanes in lane_counts:
            figures, faces = through_lanes(frames, lanes)
            if reference is None:
                reference = faces
            figures["exact"] = len(faces) == len(reference) and all(map(same_faces, faces, reference))
            if lanes not in best or figures["wall_s"] < best[lanes]["wall_s"]:
                best[lanes] = figures
    one = best[lane_counts[0]]["wall_s"]
    for lanes, figures in best.items():
        figures["media_s_per_wall_s"] = round(duration_s / figures["wall_s"], 2)
        figures["speedup"] = round(one / figures["wall_s"], 2)
        print(f"{name:<14} {lanes} lane(s): {figures['wall_s']:6.2f} s wall, {figures['cpu_s']:6.2f} CPU s, "
              f"{figures['media_s_per_wall_s']:6.2f} media s/s, x{figures['speedup']:.2f}; exact: {figures['exact']}")
    return {"frames": len(frames), "duration_s": round(duration_s, 3), "lanes": best}


def main() -> None:
    args, path = bench_input(__doc__, _arguments)
    from poise_common.settings import PoiseSettings
    from poise_devstack.face_checks import two_faces_side_by_side
    from poise_gateway.decode import encode_jpeg

    gateway = PoiseSettings().gateway
    frames = answer_jpegs(path)
    two = [(t_ms, encode_jpeg(rgb, gateway.jpeg_quality)) for t_ms, rgb in two_faces_side_by_side(MEDIA)]
    started = machine()
    result = {
        "benchmark": "face_lanes", "when": now_utc(), "machine": started,
        "input": {"file": path.name, "frames": len(frames), "sample_fps": gateway.sample_fps},
        "one_face": measure("long answer", frames, frames[-1][0] / 1000 + 1 / gateway.sample_fps, args.lanes, args.runs),
        "two_faces": measure("two faces", two, len(two) / 10.0, args.lanes, 1),
    }
    result["machine"]["load_average_1m_after"] = machine()["load_average_1m"]
    print(f"saved {save('face_lanes', result)}")


if __name__ == "__main__":
    main()
