"""The fork server: each job a fresh child of a process that has imported the decoders.

What it must keep of the sandbox's promises: a child per job that inherits nothing but its two
pipes, the niceness asked for, a server that dies is replaced, and a job already running
when it dies still gives all of its results.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from poise_common.settings import GatewaySettings
from poise_gateway import fork_server
from poise_gateway.errors import MediaRejected
from poise_gateway.sandbox import MediaSandbox

pytestmark = pytest.mark.skipif(not fork_server.available(), reason="the fork server is Linux-only")

# A stand-in child that writes what it was given into ``{0}`` and then fails its job.
_REPORTS = """
import json, os
json.dump({{"pid": os.getpid(), "parent": os.getppid(), "nice": os.getpriority(os.PRIO_PROCESS, 0),
           "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
           "job": json.loads(open(0, "rb").readline())["job"]}}, open({0!r}, "w"))
raise SystemExit(3)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_each_job_gets_a_fresh_child_of_the_server_with_nothing_but_its_pipes(tmp_path, media_dir):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert base + 5 <= 19, f"the tests run at niceness {base}: no room to be nicer"
    report = tmp_path / "child.json"
    sandbox = MediaSandbox(nice=5, stand_in=_REPORTS.format(str(report)))
    try:
        sandbox.warm_up()
        server = sandbox.fork_server.pid
        assert server is not None and _alive(server)
        assert os.getpriority(os.PRIO_PROCESS, server) == base + 5
        seen = []
        for _ in range(2):
            with pytest.raises(MediaRejected) as refused:
                sandbox.probe(media_dir / "single_face.mp4", GatewaySettings())
            assert refused.value.code == "undecodable"  # the stand-in's exit 3
            seen.append(json.loads(report.read_text()))
    finally:
        sandbox.close()
    assert [child["parent"] for child in seen] == [server, server]
    assert seen[0]["pid"] != seen[1]["pid"] and server not in {child["pid"] for child in seen}
    # The fds listed include the one listdir opened to list them; nothing of the server's (its
    # socket to the service, its wake-up pipe) and nothing of another job's.
    assert all(len(child["fds"]) <= 4 and child["fds"][:3] == [0, 1, 2] for child in seen), seen
    assert all(child["nice"] == base + 5 and child["job"] == "probe" for child in seen)
    assert not _alive(server)  # closing the sandbox stopped it


def test_real_jobs_run_in_forked_children_side_by_side(media_dir):
    limits = GatewaySettings()
    sandbox = MediaSandbox()
    try:
        sandbox.warm_up()
        path = media_dir / "pexels_face_20s.mp4"
        with ThreadPoolExecutor(4) as pool:
            infos = list(pool.map(lambda _: sandbox.probe(path, limits), range(4)))
            frames, audio = pool.submit(lambda: list(sandbox.frames(path, limits, 19.7))), \
                pool.submit(lambda: list(sandbox.audio(path, limits, 19.7)))
            frames, audio = frames.result(), audio.result()
    finally:
        sandbox.close()
    assert {(info.width, info.height) for info in infos} == {(640, 360)}
    assert len(frames) == pytest.approx(19.7 * limits.sample_fps, abs=2)
    assert sum(len(pcm) for _, pcm in audio) == pytest.approx(19.7 * 16000 * 2, rel=0.01)


def test_a_server_that_dies_is_started_again_and_a_running_job_still_finishes(media_dir):
    limits = GatewaySettings()
    path = media_dir / "pexels_face_20s.mp4"
    sandbox = MediaSandbox()
    try:
        sandbox.warm_up()
        first = sandbox.fork_server.pid
        stream = sandbox.frames(path, limits, 19.7)
        frames = [next(stream)]
        os.kill(first, signal.SIGKILL)  # mid-job: the child decoding this answer is not its server
        frames += list(stream)
        info = sandbox.probe(path, limits)  # a new server forks this job's child
        second = sandbox.fork_server.pid
    finally:
        sandbox.close()
    assert len(frames) == pytest.approx(19.7 * limits.sample_fps, abs=2)
    assert [f.t_s for f in frames] == sorted(f.t_s for f in frames)
    assert info.width == 640 and second not in (None, first)


def test_a_child_whose_server_died_is_still_killed_when_its_job_times_out(tmp_path, media_dir):
    pid_file = tmp_path / "pid"
    sandbox = MediaSandbox(stand_in=f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
                                   "time.sleep(60)")
    try:
        sandbox.warm_up()
        server = sandbox.fork_server.pid
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(sandbox.probe, media_dir / "single_face.mp4", GatewaySettings(media_timeout_s=2.0))
            while not pid_file.exists() or not pid_file.read_text():
                assert time.monotonic() - started < 10, "the stand-in never started"
                time.sleep(0.05)
            os.kill(server, signal.SIGKILL)
            with pytest.raises(MediaRejected) as refused:
                job.result()
    finally:
        sandbox.close()
    assert refused.value.code == "decode_timeout"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5  # an orphan is reaped by whoever adopted it
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_with_the_fork_server_off_each_job_starts_a_fresh_python(media_dir):
    sandbox = MediaSandbox(warm=1, fork=False)
    try:
        assert sandbox.fork_server is None
        assert sandbox.probe(media_dir / "pexels_face_20s.mp4", GatewaySettings()).width == 640
    finally:
        sandbox.close()
