"""What the benchmarks share: the machine's description, a CPU-and-wall clock, CPU of process
trees, saving results, and one embedded scoring run in a fresh process.

Run as a program it is that fresh process (``score_in_child`` starts it):

    python bench/harness.py ANSWER... --out FIGURES.json [--latency] [--threads]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
# Topics whose last message of an answer means its media has been processed.
MEDIA_DONE_TOPICS = ("features.vision", "features.audio", "transcripts", "features.nlp")


def bench_input(doc: str, add_arguments=None) -> tuple[argparse.Namespace, Path]:
    """A benchmark's start: native libraries' chatter filtered, its arguments parsed (``--repeats``
    and whatever ``add_arguments(parser)`` adds), and the long answer built."""
    from long_answer import build_long_answer
    from poise_common.native_stderr import filter_native_stderr

    filter_native_stderr()
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="copies of the 19.7 s clip (4 = 79 s)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    return args, build_long_answer(args.repeats)


def machine() -> dict:
    """Where and under what load a figure was taken (load average: this machine is shared)."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def cpu_model() -> str:
    """The CPU's model name, family, model number and clock. Hosts of the same size differ: the
    same run took 12.7-13.8 CPU s on one 2-vCPU host and about 16 on another, and a hypervisor may
    name both CPUs alike, so a figure says which it is from."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        return platform.processor() or "unknown"
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    details = [f"{label} {fields[key]}" for label, key in (("family", "cpu family"), ("model", "model")) if key in fields]
    if "cpu MHz" in fields:
        details.append(f"{float(fields['cpu MHz']):.0f} MHz")
    name = fields.get("model name") or platform.processor() or "unknown"
    return f"{name} ({', '.join(details)})" if details else name


def gpu_name() -> str:
    """The first GPU's name, or why there is none: the figures say which machine they are from."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - no GPU, no driver, no NVML
        return f"none ({type(exc).__name__})"


def gpu_config():
    """``docker/gpu/gpu_config.py``, the GPU image's Triton config variants: a script of the
    image, not a package, so loaded from its file."""
    spec = importlib.util.spec_from_file_location("gpu_config", BENCH.parent / "docker" / "gpu" / "gpu_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextmanager
def clock(figures: dict, stage: str):
    """Record the block's wall seconds and this process's CPU seconds (every thread) under ``stage``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    figures[stage] = {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}


def descendants_cpu_s() -> float:
    """CPU seconds used so far by this process's child processes, live or ended, and theirs
    (the gateway's fork server and the decoding children it forks)."""
    own = os.times()
    return tree_cpu_s(os.getpid()) - (own.user + own.system)


def workers_peak_rss_mb() -> float:
    """The peak resident memory of this process's live child processes (the gateway's fork server,
    the prosody worker), summed: read before they stop. Decoding children have ended by then;
    each is held to ``gateway.media_memory_mb``."""
    from poise_common.processes import descendants

    total_kb = 0
    for pid in descendants(os.getpid()):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and every live descendant (and the children they reaped)."""
    from poise_common.processes import descendants
    from thread_clock import stat_cpu_s

    readings = (stat_cpu_s(Path(f"/proc/{member}/stat"), reaped_children=True) for member in (pid, *descendants(pid)))
    return sum(seconds for seconds in readings if seconds is not None)


def scorecard_digest(card: dict) -> str:
    """A fingerprint of everything the scorecard says (scores, contributions, evidence, signals,
    transcripts) but the interview's random id: equal digests, equal scorecards."""
    text = json.dumps(card, sort_keys=True).replace(card["interview_id"], "<interview>")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def score_in_child(paths: list[Path], env: dict[str, str] | None = None, latency: bool = False,
                   threads: bool = False) -> dict:
    """Score ``paths`` as one interview with ``EmbeddedPoise`` in a fresh process; its figures
    (with ``threads``, also each thread group's CPU and the machine's busy CPUs: ``ThreadClock``)."""
    with tempfile.TemporaryDirectory() as home:
        out = Path(home) / "figures.json"
        command = [sys.executable, str(Path(__file__)), *map(str, paths), "--out", str(out)]
        child_env = {**os.environ, "POISE_HOME": home, **(env or {})}
        started = time.perf_counter()
        options = (["--latency"] if latency else []) + (["--threads"] if threads else [])
        subprocess.run(command + options, env=child_env, check=True)
        figures = json.loads(out.read_text())
    figures["process_wall_s"] = round(time.perf_counter() - started, 3)
    return figures


async def _score(paths: list[Path], latency: bool, threads: bool) -> dict:
    from poise.embedded import EmbeddedPoise, uploads_for
    from poise_common.settings import PoiseSettings
    from thread_clock import ThreadClock

    last_media: dict[str, float] = {}
    scored_at: list[float] = []

    async def watch(env) -> None:
        if env.payload.kind == "score.event":
            if env.payload.type == "interview.scored":
                scored_at.append(time.perf_counter())
        else:
            last_media[env.answer_id] = time.perf_counter()

    started = time.perf_counter()
    async with EmbeddedPoise(PoiseSettings()) as poise:
        if latency:
            await poise.bus.subscribe([*MEDIA_DONE_TOPICS, "scorecards.v1"], "bench-latency", watch, from_latest=True)
        ready = time.perf_counter()
        cpu, children = time.process_time(), descendants_cpu_s()
        with ThreadClock() if threads else nullcontext() as thread_clock:
            card = await poise.score(uploads_for(paths, None))
        done = time.perf_counter()
        figures = {
            "startup_s": round(ready - started, 3),
            "scoring_wall_s": round(done - ready, 3),
            "scoring_cpu_s": round(time.process_time() - cpu, 3),
            # The worker processes: the gateway's fork server and its decoding children, the prosody worker.
            "workers_cpu_s": round(descendants_cpu_s() - children, 3),
            "duration_s": round(sum(a["duration_s"] for a in card["answers"]), 3),
            "answers": len(card["answers"]),
            "words": sum(a["signals"]["nlp"]["word_count"] for a in card["answers"]),
            "digest": scorecard_digest(card),
            "scores": {c["name"]: c["score"] for c in card["competencies"]},
            "workers_peak_rss_mb": workers_peak_rss_mb(),
        }
        if thread_clock is not None:
            figures["threads_cpu_s"] = thread_clock.by_group()
            figures["busy_cpus"] = thread_clock.busy_summary()
        if latency:
            await asyncio.sleep(0.2)  # the watcher sees the scorecard event after the caller does
            figures["scorecard_after_last_media_s"] = round(scored_at[-1] - max(last_media.values()), 3)
    return figures


def main() -> None:
    from poise_common.native_stderr import filter_native_stderr

    filter_native_stderr()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--latency", action="store_true", help="also time the scorecard after the last media")
    parser.add_argument("--threads", action="store_true", help="also each thread group's CPU (ThreadClock)")
    args = parser.parse_args()
    figures = asyncio.run(_score(args.answers, args.latency, args.threads))
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
