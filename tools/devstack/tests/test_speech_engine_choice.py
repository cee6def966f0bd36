"""Which engine deploy/triton/models/speech_recognizer's ``engine`` parameter picks.

whisperx itself runs in the GPU image's environment (docker/gpu/tests); this only checks the
choice, which must never leave the audio service without word timings.
"""

from __future__ import annotations

import importlib.util

import pytest

from poise_devstack.triton import import_model


@pytest.fixture(scope="module")
def model_module():
    return import_model("speech_recognizer")


@pytest.mark.parametrize(
    ("engine", "on_gpu", "align_model_dir", "usable", "expected"),
    [
        # auto: whisperx only on a GPU instance, with CUDA and whisperx, and an alignment model.
        ("auto", True, "/models/wav2vec2", True, True),
        ("auto", True, None, True, False),  # no word timings without it: faster-whisper
        ("auto", False, "/models/wav2vec2", True, False),  # a CPU instance: faster-whisper
        ("auto", True, "/models/wav2vec2", False, False),  # no whisperx or no CUDA
        # Named engines are taken as named, on either kind of instance.
        ("whisperx", False, None, False, True),
        ("whisperx", True, None, True, True),
        ("faster-whisper", True, "/models/wav2vec2", True, False),
    ],
)
def test_engine_choice(model_module, monkeypatch, engine, on_gpu, align_model_dir, usable, expected) -> None:
    monkeypatch.setattr(model_module, "_whisperx_usable", lambda: usable)
    assert model_module._use_whisperx(engine, on_gpu=on_gpu, align_model_dir=align_model_dir) is expected


def test_without_whisperx_auto_is_faster_whisper(model_module) -> None:
    # The project's own environment has no whisperx: auto must not try it even on a GPU instance.
    assert importlib.util.find_spec("whisperx") is None
    assert model_module._whisperx_usable() is False
    assert model_module._use_whisperx("auto", on_gpu=True, align_model_dir="/models/wav2vec2") is False
