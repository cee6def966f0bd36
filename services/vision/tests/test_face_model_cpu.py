"""With one face lane, the face model gets a CPU of its own while it is the only one running, and gives it back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from poise_common.inference.backend import FACE
from poise_common.inference.local import LocalBackend
from poise_common.settings import PoiseSettings
from poise_gateway.decode import encode_jpeg, iter_frames

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs per-thread CPU affinity and two CPUs or more",
)


def affinities(pid: int) -> dict[str, set[frozenset[int]]]:
    """The CPU sets of ``pid``'s threads, by thread name: Python's name for this process's
    Python threads (the face model's "poise-face_N"), the kernel's for the others (MediaPipe's
    are "drishti")."""
    python_names = {t.native_id: t.name for t in threading.enumerate()} if pid == os.getpid() else {}
    found: dict[str, set[frozenset[int]]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = python_names.get(int(task.name)) or (task / "comm").read_text().strip()
            cpus = frozenset(os.sched_getaffinity(int(task.name)))
        except OSError:  # ended meanwhile
            continue
        found.setdefault(name, set()).add(cpus)
    return found


def one_lane(**vision) -> PoiseSettings:
    """The reservation is for one model thread: several lanes (the default on two CPUs) share them all."""
    return PoiseSettings(vision={"face_lanes": 1, **vision})


@pytest.fixture
def jpegs(media_dir):
    return [(encode_jpeg(rgb, 85), int(t * 1000)) for t, rgb in list(iter_frames(media_dir / "single_face.mp4", 5, 640))[:3]]


def test_one_stream_runs_on_a_cpu_of_its_own_and_everything_else_on_the_others(jpegs):
    everything = frozenset(os.sched_getaffinity(0))
    own = max(everything)
    backend = LocalBackend(one_lane(), whole_pipeline=True)
    # A worker process started before the stream, as the gateway's fork server is.
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    async def scenario():
        await backend.start({FACE})
        stream = backend.face_stream("a")
        for jpeg, t_ms in jpegs:
            await stream.detect(jpeg, t_ms)
        during = affinities(os.getpid()), os.sched_getaffinity(worker.pid), os.sched_getaffinity(0)
        await stream.close()
        after = affinities(os.getpid()), os.sched_getaffinity(worker.pid), os.sched_getaffinity(0)
        await backend.stop()
        return during, after

    try:
        (threads, worker_cpus, main_cpus), (threads_after, worker_after, main_after) = asyncio.run(scenario())
    finally:
        worker.kill()
        worker.wait()
    # The model's thread (the face found and followed outside MediaPipe's graph runs on it), and
    # MediaPipe's threads where its graph runs (started from the model's thread).
    model_threads = {name: sets for name, sets in threads.items() if name.startswith("poise-face") or name == "drishti"}
    assert "poise-face_0" in model_threads, threads
    assert all(sets == {frozenset({own})} for sets in model_threads.values()), threads
    assert main_cpus == worker_cpus == everything - {own}
    # Nothing else kept the model's CPU: each thread is on one side or the other.
    assert set().union(*threads.values()) == {frozenset({own}), everything - {own}}, threads
    # Given back: every thread that is left, and the worker, may run anywhere again.
    assert main_after == worker_after == everything
    assert all(sets == {everything} for sets in threads_after.values()), threads_after


def test_a_second_stream_gives_every_thread_every_cpu_back(jpegs):
    everything = frozenset(os.sched_getaffinity(0))
    backend = LocalBackend(one_lane(), whole_pipeline=True)

    async def scenario():
        await backend.start({FACE})
        first = backend.face_stream("a")
        await first.detect(*jpegs[0])
        alone = backend.cpus.holder is first, os.sched_getaffinity(0)
        second = backend.face_stream("b")
        await second.detect(*jpegs[0])
        together = backend.cpus.holder, affinities(os.getpid())
        await first.close()
        await second.close()
        await backend.stop()
        return alone, together

    (held, main_cpus), (holder, threads) = asyncio.run(scenario())
    assert held and main_cpus == everything - {max(everything)}
    assert holder is None and all(sets == {everything} for sets in threads.values()), threads


def test_off_in_a_vision_worker_or_on_one_cpu_nothing_is_pinned(jpegs):
    everything = frozenset(os.sched_getaffinity(0))

    async def scenario(settings: PoiseSettings, whole_pipeline: bool = True):
        backend = LocalBackend(settings, whole_pipeline)
        await backend.start({FACE})
        stream = backend.face_stream("a")
        await stream.detect(*jpegs[0])
        seen = backend.cpus.holder, affinities(os.getpid())
        await stream.close()
        await backend.stop()
        return seen

    holder, threads = asyncio.run(scenario(one_lane(face_model_cpu="off")))
    assert holder is None and all(sets == {everything} for sets in threads.values())
    # "auto" in a process that runs vision alone (workers are scaled by running several) ...
    holder, threads = asyncio.run(scenario(one_lane(), whole_pipeline=False))
    assert holder is None and all(sets == {everything} for sets in threads.values())
    # ... where "on" pins it.
    holder, threads = asyncio.run(scenario(one_lane(face_model_cpu="on"), whole_pipeline=False))
    assert holder is not None and threads["poise-face_0"] == {frozenset({max(everything)})}
    # Two lanes share every CPU, "on" or not.
    two_lanes = PoiseSettings(vision={"face_lanes": 2, "face_model_cpu": "on"})
    holder, threads = asyncio.run(scenario(two_lanes))
    assert holder is None and all(sets == {everything} for sets in threads.values())
    one = {min(everything)}
    os.sched_setaffinity(0, one)
    try:
        holder, threads = asyncio.run(scenario(one_lane()))
    finally:
        os.sched_setaffinity(0, everything)
    assert holder is None and threads["poise-face_0"] == {frozenset(one)}


def test_a_cpu_another_process_holds_is_not_taken_again(jpegs):
    """Two processes scoring at once on one machine: the second finds the only CPU that may be
    reserved (never the lowest) taken, and pins nothing, rather than share it with the first."""
    everything = frozenset(os.sched_getaffinity(0))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from poise_common.inference.cpu_reservation import CpuReservation\n"
         "r = CpuReservation(); s = object(); r.opened(s); print(r.claim(s), flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        backend = LocalBackend(one_lane(), whole_pipeline=True)

        async def scenario():
            await backend.start({FACE})
            stream = backend.face_stream("a")
            await stream.detect(*jpegs[0])
            seen = backend.cpus.holder, os.sched_getaffinity(0)
            await stream.close()
            await backend.stop()
            return seen

        claimed, main_cpus = asyncio.run(scenario())
    finally:
        holder.kill()
        holder.wait()
    if len(everything) == 2:
        assert claimed is None and main_cpus == everything
    else:  # the next CPU down
        assert claimed is not None and main_cpus == everything - {sorted(everything)[-2]}
