"""The Triton model repository (deploy/triton/models) on a real ``tritonserver``, over gRPC.

The models must answer exactly what the in-process runners answer on the same input: the vision
and audio services then behave the same whichever backend a deployment picks. These tests fail
(never skip) when the server cannot start: the wheel that carries it is a project dependency.
"""

from __future__ import annotations

import json
import re
import shutil
import string
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from poise_devstack.processes import StartupError
from poise_devstack.speech_checks import load_audio_16k, speech_inputs
from poise_devstack.triton import DEFAULT_MODEL_REPOSITORY, TritonServer

pytestmark = pytest.mark.media

FACE = "face_landmarker"
SPEECH = "speech_recognizer"
SAMPLE_FPS = 10.0
JPEG_QUALITY = 85
# The disfluent prompt of shared/notes/MODELS.md: makes Whisper write filled pauses.
DISFLUENT_PROMPT = "Umm, let me think like, hmm... Okay, here's what I'm, like, thinking."
ATOL = 1e-5


# -- helpers ---------------------------------------------------------------------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _jpeg_frames(path: Path, fps: float = SAMPLE_FPS, limit: int | None = None) -> list[tuple[int, bytes]]:
    """(t_ms, JPEG bytes) for frames sampled at ``fps``, encoded as the gateway does."""
    import av
    import cv2

    frames: list[tuple[int, bytes]] = []
    next_t = 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time)
            if t + 1e-6 < next_t:
                continue
            while next_t <= t + 1e-6:
                next_t += 1.0 / fps
            rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            assert ok
            frames.append((int(round(t * 1000)), buf.tobytes()))
            if limit is not None and len(frames) >= limit:
                break
    return frames


def _face_inputs(jpeg: bytes, t_ms: int):
    import tritonclient.grpc as grpcclient

    frame = grpcclient.InferInput("JPEG", [1, 1], "BYTES")
    frame.set_data_from_numpy(np.array([[jpeg]], dtype=np.object_))
    stamp = grpcclient.InferInput("TIMESTAMP_MS", [1, 1], "INT64")
    stamp.set_data_from_numpy(np.array([[t_ms]], dtype=np.int64))
    return [frame, stamp]


def _faces_of(result):
    from poise_common.inference.faces import RawFaces

    count = result.as_numpy("FACE_COUNT")
    landmarks = result.as_numpy("LANDMARKS")
    blendshapes = result.as_numpy("BLENDSHAPES")
    matrices = result.as_numpy("MATRICES")
    assert count.shape == (1, 1)
    n = int(count[0, 0])
    assert landmarks.shape == (1, n, 478, 3) and landmarks.dtype == np.float32
    assert blendshapes.shape == (1, n, 52) and blendshapes.dtype == np.float32
    assert matrices.shape == (1, n, 4, 4) and matrices.dtype == np.float32
    return RawFaces(landmarks[0], blendshapes[0], matrices[0])


def _end_sequence(client, sequence_id: str) -> None:
    """An empty JPEG with END: no faces back, the sequence's landmarker freed."""
    faces = _faces_of(client.infer(FACE, _face_inputs(b"", 0), sequence_id=sequence_id, sequence_end=True))
    assert faces.count == 0


def _run_sequence(client, sequence_id: str, frames: list[tuple[int, bytes]], barrier=None) -> list:
    results = []
    for i, (t_ms, jpeg) in enumerate(frames):
        if barrier is not None:
            barrier.wait(timeout=60)  # the other stream sends its frame at the same moment
        result = client.infer(FACE, _face_inputs(jpeg, t_ms), sequence_id=sequence_id, sequence_start=i == 0)
        results.append(_faces_of(result))
    _end_sequence(client, sequence_id)
    return results


def _in_process_faces(frames: list[tuple[int, bytes]]) -> list:
    from poise_common.inference.faces import FaceLandmarkerRunner, decode_jpeg_rgb
    from poise_common.settings import default_models_dir

    with FaceLandmarkerRunner(default_models_dir() / "face_landmarker.task", max_faces=2) as runner:
        return [runner.detect(decode_jpeg_rgb(jpeg), t_ms) for t_ms, jpeg in frames]


def _assert_same_faces(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.count == e.count, f"frame {i}: {g.count} faces via Triton, {e.count} in-process"
        assert np.allclose(g.landmarks, e.landmarks, atol=ATOL), f"frame {i}: landmarks differ"
        assert np.allclose(g.blendshapes, e.blendshapes, atol=ATOL), f"frame {i}: blendshapes differ"
        assert np.allclose(g.matrices, e.matrices, atol=ATOL), f"frame {i}: matrices differ"


def _segments_of(result) -> list[dict]:
    out = result.as_numpy("SEGMENTS")
    assert out.shape == (1, 1)
    return json.loads(out[0, 0])


def _plain(text: str) -> str:
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


def _metric(text: str, name: str, model: str) -> float:
    match = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {model} not in the metrics"
    return float(match.group(1))


def _processes_mentioning(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton() -> Iterator[TritonServer]:
    """One server with both models for this module; nothing of it may outlive the module."""
    server = TritonServer(DEFAULT_MODEL_REPOSITORY, models=[FACE, SPEECH])
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - reported as the failure of every test that asked
        server.close()
        pytest.fail(f"could not start tritonserver with {FACE} and {SPEECH}: {exc}")
    marker = str(server.work_dir)
    assert len(_processes_mentioning(marker)) >= 3, "expected the server and one stub per model"
    yield server
    server.close()
    left = _processes_mentioning(marker)
    if left:
        pytest.fail(f"tritonserver or model stubs still running after close(): pids {left}")


@pytest.fixture(scope="module")
def client(triton: TritonServer):
    import tritonclient.grpc as grpcclient

    grpc_client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield grpc_client
    grpc_client.close()


@pytest.fixture(scope="module")
def face_frames(media_dir: Path) -> list[tuple[int, bytes]]:
    frames = _jpeg_frames(media_dir / "single_face.mp4")
    assert len(frames) >= 20
    return frames


@pytest.fixture(scope="module")
def other_frames(media_dir: Path) -> list[tuple[int, bytes]]:
    return _jpeg_frames(media_dir / "talking_head_2.mp4", limit=20)


@pytest.fixture(scope="module")
def jfk(media_dir: Path) -> np.ndarray:
    return load_audio_16k(media_dir / "jfk.flac")


@pytest.fixture(scope="module")
def whisper():
    from poise_common.inference.speech import WhisperRunner

    runner = WhisperRunner()  # the same defaults as the model's config.pbtxt parameters
    yield runner
    runner.close()


# -- face_landmarker -------------------------------------------------------------------------------


def test_face_sequence_equals_in_process(client, face_frames) -> None:
    got = _run_sequence(client, _unique("answer"), face_frames)
    expected = _in_process_faces(face_frames)
    assert sum(f.count for f in expected) >= len(face_frames) - 2, "the clip shows one face throughout"
    _assert_same_faces(got, expected)


def test_interleaved_sequences_keep_their_own_state(triton, client, face_frames, other_frames) -> None:
    first, second = face_frames[:20], other_frames
    alone = {"first": _in_process_faces(first), "second": _in_process_faces(second)}

    # Alternating on one connection: frame of one answer, frame of the other.
    ids = {"first": _unique("answer"), "second": _unique("answer")}
    results: dict[str, list] = {"first": [], "second": []}
    for i in range(len(first)):
        for name, frames in (("first", first), ("second", second)):
            t_ms, jpeg = frames[i]
            result = client.infer(FACE, _face_inputs(jpeg, t_ms), sequence_id=ids[name],
                                  sequence_start=i == 0)
            results[name].append(_faces_of(result))
    for name in ids:
        _end_sequence(client, ids[name])
        _assert_same_faces(results[name], alone[name])

    # At the same moment from two threads, so that the batcher can put both in one execute().
    import tritonclient.grpc as grpcclient

    barrier = threading.Barrier(2)
    concurrent: dict[str, list] = {}
    errors: list[BaseException] = []

    def stream(name: str, frames: list) -> None:
        own = grpcclient.InferenceServerClient(triton.grpc_url)  # one connection per stream
        try:
            concurrent[name] = _run_sequence(own, _unique("answer"), frames, barrier)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)
            barrier.abort()
        finally:
            own.close()

    threads = [threading.Thread(target=stream, args=(name, frames))
               for name, frames in (("first", first), ("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for name in ("first", "second"):
        _assert_same_faces(concurrent[name], alone[name])


def test_bad_frame_fails_alone_and_the_stream_goes_on(client, face_frames) -> None:
    from tritonclient.utils import InferenceServerException

    frames = face_frames[:6]
    sequence_id = _unique("answer")
    got = []
    for i, (t_ms, jpeg) in enumerate(frames):
        if i == 3:
            with pytest.raises(InferenceServerException, match="not a decodable JPEG"):
                client.infer(FACE, _face_inputs(b"not a jpeg", t_ms - 50), sequence_id=sequence_id)
        got.append(_faces_of(client.infer(FACE, _face_inputs(jpeg, t_ms), sequence_id=sequence_id,
                                          sequence_start=i == 0)))
    _end_sequence(client, sequence_id)
    _assert_same_faces(got, _in_process_faces(frames))


def test_face_request_without_sequence_id_is_refused(client, face_frames) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="correlation ID"):
        client.infer(FACE, _face_inputs(face_frames[0][1], 0))


# -- speech_recognizer -----------------------------------------------------------------------------


def test_speech_equals_in_process(client, jfk, whisper) -> None:
    for prompt in (DISFLUENT_PROMPT, None):
        got = _segments_of(client.infer(SPEECH, speech_inputs(jfk, prompt)))
        expected = [s.to_json() for s in whisper.transcribe(jfk, prompt)]
        assert "ask not what your country can do for you" in _plain(" ".join(s["text"] for s in got))
        assert got == expected, f"prompt {prompt!r}: Triton and in-process transcripts differ"
        assert all(s["words"] for s in got), "every segment carries word timings"


def test_speech_ragged_batch_answers_each_request(client, jfk, whisper) -> None:
    """Requests of different lengths at once: each is transcribed as its own audio."""
    clips = [jfk, jfk[: 16000 * 4], jfk[16000 * 4:]]
    results: list = [None] * len(clips)
    done = threading.Semaphore(0)

    def callback(index: int):
        def on_result(result, error) -> None:
            results[index] = error if error is not None else _segments_of(result)
            done.release()
        return on_result

    for i, clip in enumerate(clips):
        client.async_infer(SPEECH, speech_inputs(clip, None), callback(i))
    for _ in clips:
        assert done.acquire(timeout=120), "a speech request got no answer"
    for clip, got in zip(clips, results):
        assert not isinstance(got, Exception), got
        assert got == [s.to_json() for s in whisper.transcribe(clip, None)]


def test_speech_empty_audio_gives_no_segments(client) -> None:
    assert _segments_of(client.infer(SPEECH, speech_inputs(np.zeros(0, np.float32), None))) == []


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_count_inferences_of_both_models(triton, client, face_frames, jfk) -> None:
    sequence_id = _unique("answer")
    client.infer(FACE, _face_inputs(face_frames[0][1], face_frames[0][0]), sequence_id=sequence_id,
                 sequence_start=True)
    _end_sequence(client, sequence_id)
    client.infer(SPEECH, speech_inputs(jfk[: 16000 * 2], None))

    text = triton.metrics_text()
    for model in (FACE, SPEECH):
        assert _metric(text, "nv_inference_count", model) >= 1
        assert _metric(text, "nv_inference_request_success", model) >= 1
        # Execution count at or below inference count: batching can only merge executions.
        assert _metric(text, "nv_inference_exec_count", model) <= _metric(text, "nv_inference_count", model)


# -- the harness itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "broken", "reason"),
    [
        # Found by Triton's config validation.
        ("int32_false_true: [ 0, 1 ]", "int32_false_true: [ 0 ]", "must have exactly 2 entries"),
        # Not even a valid config.pbtxt: protobuf names line and column.
        ("data_type: TYPE_INT64", "data_type: TYPE_INTEGER", 'Unknown enumeration value of "TYPE_INTEGER"'),
        # Found by model.py's initialize().
        ('value: { string_value: "2" }', 'value: { string_value: "two" }', "max_faces must be an integer"),
    ],
    ids=["config-check", "config-syntax", "model-initialize"],
)
def test_broken_model_config_fails_start_with_its_reason(
    tmp_path: Path, original: str, broken: str, reason: str
) -> None:
    repo = tmp_path / "models"
    shutil.copytree(DEFAULT_MODEL_REPOSITORY / FACE, repo / FACE)
    config = repo / FACE / "config.pbtxt"
    text = config.read_text()
    assert original in text
    config.write_text(text.replace(original, broken, 1))

    server = TritonServer(repo, models=[FACE], startup_timeout=60)
    try:
        with pytest.raises(StartupError) as failure:
            server.start()
        message = str(failure.value)
        headline = message.splitlines()[0]
        assert headline.startswith("tritonserver could not start: "), message
        assert f"'{FACE}'" in headline, message
        assert reason in message, message
        assert server.pid is None
        assert not _processes_mentioning(str(server.work_dir)), "a failed start left processes behind"
    finally:
        server.close()


def test_unknown_model_is_refused_before_start(tmp_path: Path) -> None:
    server = TritonServer(DEFAULT_MODEL_REPOSITORY, models=["no_such_model"], work_dir=tmp_path)
    with pytest.raises(RuntimeError, match=f"no no_such_model.*{FACE}"):
        server.start()
    assert server.pid is None


_ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

_ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 2)])
            for r in requests]
"""


def test_restart_keeps_ports_and_stop_or_kill_leave_nothing(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    repo = tmp_path / "models"
    (repo / "echo" / "1").mkdir(parents=True)
    (repo / "echo" / "config.pbtxt").write_text(_ECHO_CONFIG)
    (repo / "echo" / "1" / "model.py").write_text(_ECHO_MODEL)

    def echo(server: TritonServer) -> np.ndarray:
        with grpcclient.InferenceServerClient(server.grpc_url) as c:
            x = grpcclient.InferInput("IN", [3], "FP32")
            x.set_data_from_numpy(np.array([1, 2, 3], np.float32))
            return c.infer("echo", [x]).as_numpy("OUT")

    with TritonServer(repo) as server:
        marker = str(server.work_dir)
        urls = (server.grpc_url, server.http_url, server.metrics_url)
        first_pid = server.pid
        assert echo(server).tolist() == [2, 4, 6]

        server.restart()
        assert (server.grpc_url, server.http_url, server.metrics_url) == urls
        assert server.pid != first_pid
        assert echo(server).tolist() == [2, 4, 6]

        envs = set(server._python_envs)
        assert len(envs) == 1 and all(Path(e).is_dir() for e in envs), envs  # the Python backend's own folder
        server.kill()
        assert server.pid is None
        assert not _processes_mentioning(marker), "kill() left the server or a stub running"
        assert not list(Path("/dev/shm").glob(f"{server._shm_prefix}*")), "kill() left shared memory"
        assert not any(Path(e).exists() for e in envs), "kill() left the Python backend's folder in /tmp"

        server.start()
        assert echo(server).tolist() == [2, 4, 6]
    assert not _processes_mentioning(marker), "close() left the server or a stub running"
    assert not list(Path("/dev/shm").glob(f"{server._shm_prefix}*"))
    assert not server._python_envs
