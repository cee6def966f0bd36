"""Inference through a real NVIDIA Triton server (the tritonserver of the nvidia-pytriton wheel).

The embedded pipeline is pointed at Triton by one setting; its features must equal the
in-process ones within float tolerance and its competency scores must be identical.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poise_devstack.triton import TritonServer

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "deploy" / "triton" / "models"
SAMPLE = REPO / "examples" / "sample_interview.mp4"
QUESTIONS = REPO / "examples" / "questions.yaml"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def triton():
    server = TritonServer(MODELS, models=["face_landmarker", "speech_recognizer"])
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - a test that needs Triton fails without it
        server.close()
        pytest.fail(f"could not start Triton: {exc}")
    yield server
    server.close()


def score(paths, home: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    environ = {**os.environ, "POISE_HOME": str(home), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "poise", "score", *map(str, paths), "--questions", str(QUESTIONS), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
    )


def finish(proc: subprocess.Popen, timeout: float = 900) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def assert_close(a, b, path: str = "") -> None:
    """Equal structure; numbers equal within TOLERANCE (relative or absolute)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=TOLERANCE, abs=TOLERANCE), path
    else:
        assert a == b, path


def scores(card: dict) -> dict:
    return {c["name"]: c["score"] for c in card["competencies"]}


@pytest.fixture(scope="module")
def local_card(tmp_path_factory) -> dict:
    return finish(score([SAMPLE], tmp_path_factory.mktemp("local")))


def test_features_through_triton_equal_in_process(triton, local_card, tmp_path):
    card = finish(score([SAMPLE], tmp_path, {"POISE_INFERENCE__URL": f"triton://{triton.grpc_url}"}))
    assert scores(card) == scores(local_card)
    for remote, local in zip(card["answers"], local_card["answers"]):
        assert_close(remote["signals"], local["signals"], "signals")
        assert_close(remote["transcript"], local["transcript"], "transcript")


@pytest.fixture(scope="module")
def long_answer(tmp_path_factory) -> tuple[Path, dict]:
    """79 s of real face and speech (an outage lands mid-answer), and its in-process scorecard."""
    sys.path.insert(0, str(REPO / "bench"))
    from long_answer import build_long_answer

    path = build_long_answer(4)
    return path, finish(score([path], tmp_path_factory.mktemp("local-long")))


# One lane: the client's retries outlast the outage, then the restarted server has lost the
# answer's sequence. Two lanes, one retry: calls give up while the server is down, and frames after
# the one that failed were acknowledged already, so the answer is replayed until the server is back.
@pytest.mark.parametrize(("lanes", "retries"), [(1, 4), (2, 1)])
def test_triton_stopped_mid_run_backs_off_and_completes(triton, long_answer, tmp_path, lanes, retries):
    path, reference = long_answer
    proc = score([path], tmp_path / "triton", {
        "POISE_INFERENCE__URL": f"triton://{triton.grpc_url}",
        "POISE_INFERENCE__FACE_LANES": str(lanes), "POISE_INFERENCE__RETRIES": str(retries),
    })
    time.sleep(6.0)  # models warmed up and frames flowing
    assert proc.poll() is None, "the run finished before Triton could be stopped"
    triton.stop()
    time.sleep(3.0)
    triton.start()
    card = finish(proc)
    assert scores(card) == scores(reference)
    assert_close(card["answers"][0]["signals"], reference["answers"][0]["signals"], "signals")


def _face_frames(media_dir: Path, count: int) -> list[tuple[int, bytes]]:
    from poise_gateway.decode import encode_jpeg, iter_frames

    frames = list(iter_frames(media_dir / "pexels_face_20s.mp4", 10, 640))[:count]
    return [(int(round(t * 1000)), encode_jpeg(rgb, 85)) for t, rgb in frames]


def test_face_lanes_through_triton_give_one_sequences_faces(triton, media_dir):
    """One sequence starts over (a black frame) at every span, as in process; spans in a sequence
    a lane each give, bit for bit, the same faces; and every lane's sequence is ended on the server."""
    from poise_common.inference.backend import FACE, StreamLost
    from poise_common.inference.face_lanes import same_faces
    from poise_common.inference.faces import FaceLandmarkerRunner, decode_jpeg_rgb
    from poise_common.inference.triton import TritonBackend
    from poise_common.settings import PoiseSettings

    frames = _face_frames(media_dir, 48)

    async def through(lanes: int):
        settings = PoiseSettings(inference={"face_lanes": lanes}, vision={"face_span_frames": 6})
        backend = TritonBackend(triton.grpc_url, settings)
        await backend.start({FACE})
        started: list[str] = []
        black_frames = []
        detect_frame = backend.detect_frame

        async def recording(sequence, jpeg, t_ms, *, start):
            if start:
                started.append(sequence)
            if jpeg not in {j for _, j in frames}:
                black_frames.append(sequence)
            return await detect_frame(sequence, jpeg, t_ms, start=start)

        backend.detect_frame = recording
        try:
            stream = backend.face_stream(f"lanes-{lanes}")
            if lanes == 1:  # one sequence takes one frame at a time
                faces = [await stream.detect(jpeg, t_ms) for t_ms, jpeg in frames]
            else:
                faces = await asyncio.gather(*(stream.submit(jpeg, t_ms) for t_ms, jpeg in frames))
            await stream.close()
            for sequence in started:  # a sequence still open would take a frame without START
                with pytest.raises(StreamLost):
                    await detect_frame(sequence, frames[0][1], 10**9, start=False)
            return faces, started, black_frames
        finally:
            await backend.stop()

    one, started, black_frames = asyncio.run(through(1))
    assert started == ["lanes-1"] and len(black_frames) == len(frames) // 6 - 1  # a black frame a span
    with FaceLandmarkerRunner(PoiseSettings().vision.face_model_path) as runner:
        in_process = []
        for n, (t_ms, jpeg) in enumerate(frames):
            if n % 6 == 0:
                runner.start_over()
            in_process.append(runner.detect(decode_jpeg_rgb(jpeg), t_ms))
    assert all(raw.count == 1 for raw in one)
    assert all(same_faces(a, b) for a, b in zip(one, in_process))
    two, started, black_frames = asyncio.run(through(2))
    assert len(two) == len(one) and all(same_faces(a, b) for a, b in zip(one, two))
    assert sorted(started) == ["lanes-2/0", "lanes-2/1"]  # one sequence a lane
    assert len(black_frames) >= 2  # lanes started over within their sequences


def test_jpeg_size_reads_the_frame_header():
    from poise_common.inference.triton import black_jpeg, jpeg_size
    from poise_gateway.decode import encode_jpeg
    import numpy as np

    frame = np.random.default_rng(1).integers(0, 255, (360, 640, 3), np.uint8)
    assert jpeg_size(encode_jpeg(frame, 85)) == (640, 360)
    assert jpeg_size(black_jpeg(590, 590)) == (590, 590)
    assert jpeg_size(b"not a jpeg") is None and jpeg_size(encode_jpeg(frame, 85)[:20]) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POISE_INFERENCE__BATCH_SIZE": "64"}, "below this client's batch size 64"),
        ({"POISE_INFERENCE__FACE_MODEL": "no_such_model"}, "'no_such_model' is not ready"),
    ],
)
def test_unfit_model_fails_at_start_with_a_clear_error(triton, tmp_path, env, message):
    environ = {
        **os.environ, "POISE_HOME": str(tmp_path), "POISE_INFERENCE__URL": f"triton://{triton.grpc_url}", **env,
    }
    result = subprocess.run(
        [sys.executable, "-m", "poise_vision"], capture_output=True, text=True, env=environ, timeout=120
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert message in result.stderr + result.stdout
