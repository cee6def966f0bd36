"""The speech model's whisperx engine, in the GPU image's Python environment, on the CPU.

Runs in the environment built from docker/gpu/requirements.txt (``make gpu-env-test`` builds
``.venv-gpu`` and runs this file there); the project's own environment has no whisperx. Offline:
Whisper is the bundled tiny.en, the VAD weights come with whisperx. These tests fail, never skip,
when whisperx or the Triton server is missing: that environment is what they check.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from poise_devstack.speech_checks import SAMPLE_RATE as SR
from poise_devstack.speech_checks import JFK_TEXT, load_audio_16k, speech_inputs, word_error_rate
from poise_devstack.triton import DEFAULT_MODEL_REPOSITORY, TritonServer, import_model

pytestmark = pytest.mark.media

SPEECH = "speech_recognizer"
# The disfluent prompt of shared/notes/MODELS.md; on jfk it makes tiny.en write punctuation.
DISFLUENT_PROMPT = "Umm, let me think like, hmm... Okay, here's what I'm, like, thinking."


def _text(segments) -> str:
    return " ".join(s.text.strip() for s in segments)


def _assert_in_time_order(segments, duration: float) -> None:
    assert segments, "no segments"
    for segment in segments:
        assert 0.0 <= segment.start < segment.end <= duration + 0.05, (segment.start, segment.end, duration)
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    for before, after in zip(segments, segments[1:]):
        assert before.end <= after.start + 1e-6, "segments overlap"


def _engine(model_module, **overrides):
    from poise_common.inference.speech import resolve_model_path

    options = dict(device="cpu", device_index=0, compute_type="int8", beam_size=1, batch_size=16,
                   threads=2, align_model_dir=None)
    options.update(overrides)
    return model_module._WhisperXEngine(resolve_model_path(None), **options)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_module():
    return import_model(SPEECH)


@pytest.fixture(scope="module")
def engine(model_module):
    engine = _engine(model_module)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def jfk(media_dir: Path) -> np.ndarray:
    return load_audio_16k(media_dir / "jfk.flac")


# -- the environment -------------------------------------------------------------------------------


def test_check_gpu_reports_whisperx_importable() -> None:
    """The GPU worker image's own check (docker/gpu/check_gpu.py), in the same environment."""
    import torch

    script = Path(__file__).resolve().parent.parent / "check_gpu.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert "whisperx: importable" in done.stdout, done.stdout + done.stderr
    # Without a CUDA device the check fails, as it must on a node that lacks one.
    assert done.returncode == (0 if torch.cuda.is_available() else 1), done.stdout


# -- the engine, in process ------------------------------------------------------------------------


def test_whisperx_is_the_installed_stack(model_module) -> None:
    import torch
    import whisperx  # noqa: F401 - fails here, with its reason, when the environment is wrong

    # auto takes whisperx only with CUDA; engine=whisperx insists (the Triton test below).
    assert model_module._whisperx_usable() is torch.cuda.is_available()


def test_jfk_transcribed_within_the_audio(engine, jfk) -> None:
    segments = engine.transcribe(jfk)
    assert word_error_rate(JFK_TEXT, _text(segments)) <= 0.10, _text(segments)
    _assert_in_time_order(segments, jfk.size / SR)
    # No alignment model configured: whisperx gives segments without words.
    assert all(s.words == [] for s in segments)


def test_a_prompt_applies_to_its_own_call_only(engine, jfk) -> None:
    pipeline = engine._pipeline
    seen: list[str | None] = []
    generate = pipeline.model.generate_segment_batched

    def spy(features, tokenizer, options, *args, **kwargs):
        seen.append(options.initial_prompt)
        return generate(features, tokenizer, options, *args, **kwargs)

    plain = _text(engine.transcribe(jfk))
    pipeline.model.generate_segment_batched = spy
    try:
        prompted = _text(engine.transcribe(jfk, DISFLUENT_PROMPT))
        after = _text(engine.transcribe(jfk))
    finally:
        del pipeline.model.generate_segment_batched
    assert seen and seen[0] == DISFLUENT_PROMPT and seen[-1] is None, seen
    assert engine._pipeline.options.initial_prompt is None
    assert prompted != plain, "the prompt reached the decoder but changed nothing"
    assert after == plain, "the previous call's prompt stayed"
    assert word_error_rate(JFK_TEXT, prompted) <= 0.10, prompted


def test_empty_audio_gives_no_segments(engine) -> None:
    assert engine.transcribe(np.zeros(0, np.float32)) == []
    assert engine.transcribe(np.zeros(0, np.float32), DISFLUENT_PROMPT) == []


def test_silence_gives_no_segments(engine) -> None:
    assert engine.transcribe(np.zeros(3 * SR, np.float32)) == []


def test_align_model_dir_gives_every_segment_words(model_module, jfk, tmp_path) -> None:
    """The word-timing path, offline, with a wav2vec2 file provisioned where torchaudio looks.

    The weights are random (no hub here), so the times say nothing about the speech; what is
    checked is that a file under torchaudio's name in ``align_model_dir`` is loaded without a
    download and that whisperx's words come back as ``RawWord``s inside their segments.
    """
    import torch
    import torchaudio

    bundle = torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H
    torch.manual_seed(0)
    state = torchaudio.models.wav2vec2_model(**bundle._params).state_dict()
    # The published checkpoint has fairseq's three unused labels at rows 1-3; torchaudio drops them.
    for key in ("aux.weight", "aux.bias"):
        rows = state[key]
        state[key] = torch.cat([rows[:1], torch.zeros((3, *rows.shape[1:])), rows[1:]])
    torch.save({k: v.half() for k, v in state.items()}, tmp_path / Path(bundle._path).name)

    engine = _engine(model_module, align_model_dir=str(tmp_path))
    try:
        segments = engine.transcribe(jfk)
    finally:
        engine.close()
    assert word_error_rate(JFK_TEXT, _text(segments)) <= 0.10, _text(segments)
    duration = jfk.size / SR
    for segment in segments:
        assert segment.words, "a segment without words"
        assert [w.word.strip() for w in segment.words] == segment.text.split()
        assert all(w.word.startswith(" ") for w in segment.words)
        for word in segment.words:
            assert 0.0 <= word.start <= word.end <= duration + 0.05


# -- the engine in a real tritonserver -------------------------------------------------------------


def _segments_of(result) -> list:
    from poise_common.inference.speech import RawSegment

    out = result.as_numpy("SEGMENTS")
    assert out.shape == (1, 1)
    return [RawSegment.from_json(s) for s in json.loads(out[0, 0])]


@pytest.fixture(scope="module")
def whisperx_server(tmp_path_factory) -> Iterator[TritonServer]:
    """tritonserver with speech_recognizer as configured, but for ``engine: whisperx``."""
    repo = tmp_path_factory.mktemp("models")
    shutil.copytree(DEFAULT_MODEL_REPOSITORY / SPEECH, repo / SPEECH,
                    ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / SPEECH / "config.pbtxt"
    text = config.read_text()
    auto = 'key: "engine"\n    value: { string_value: "auto" }'
    assert auto in text
    config.write_text(text.replace(auto, auto.replace('"auto"', '"whisperx"')))
    server = TritonServer(repo, models=[SPEECH], startup_timeout=300)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - reported as the failure of every test that asked
        try:  # a start that timed out names no reason: the log's end says how far the model got
            tail = "\n".join(server.log_path.read_text(errors="replace").splitlines()[-40:])
        except (OSError, RuntimeError):
            tail = "(no log)"
        server.close()
        pytest.fail(f"could not start tritonserver with {SPEECH} (engine whisperx): {exc}\n{tail}")
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(whisperx_server: TritonServer):
    import tritonclient.grpc as grpcclient

    grpc_client = grpcclient.InferenceServerClient(whisperx_server.grpc_url)
    yield grpc_client
    grpc_client.close()


def test_triton_loads_the_whisperx_engine_on_a_cpu_instance(whisperx_server, client) -> None:
    assert client.is_model_ready(SPEECH)
    log = whisperx_server.log_path.read_text(errors="replace")
    assert "speech_recognizer ready: engine=_WhisperXEngine" in log


def test_triton_whisperx_answers(client, engine, jfk) -> None:
    plain = _segments_of(client.infer(SPEECH, speech_inputs(jfk, None)))
    assert word_error_rate(JFK_TEXT, _text(plain)) <= 0.10, _text(plain)
    _assert_in_time_order(plain, jfk.size / SR)
    # The same engine in process answers the same (one engine, two ways of calling it).
    assert [dataclasses.asdict(s) for s in plain] == [dataclasses.asdict(s) for s in engine.transcribe(jfk)]

    prompted = _segments_of(client.infer(SPEECH, speech_inputs(jfk, DISFLUENT_PROMPT)))
    assert _text(prompted) != _text(plain)
    again = _segments_of(client.infer(SPEECH, speech_inputs(jfk, None)))
    assert again == plain, "the previous request's prompt stayed in the model"
    assert _segments_of(client.infer(SPEECH, speech_inputs(np.zeros(0, np.float32), None))) == []
