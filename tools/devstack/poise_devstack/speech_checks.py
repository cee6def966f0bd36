"""What the speech model's tests share: the reference recording's words, audio as the services
see it, word error rate, and the speech model's Triton inputs.

Imported by the tests of the project's environment and of the GPU image's (``.venv-gpu``), which
both install this package.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
# What is said in ../shared/media/jfk.flac.
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


def load_audio_16k(path: Path) -> np.ndarray:
    """The first audio stream as mono float32 at 16 kHz in [-1, 1], decoded as the gateway does."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation, as word error rates compare them."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, on normalised words."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_word != hyp_word),  # substitution or match
            )
        previous = current
    return previous[-1] / max(len(ref), 1)


def speech_inputs(samples: np.ndarray, prompt: str | None) -> list:
    """The ``speech_recognizer`` model's inputs for one utterance (``tritonclient.grpc``)."""
    import tritonclient.grpc as grpcclient

    audio = grpcclient.InferInput("AUDIO", [1, samples.size], "FP32")
    audio.set_data_from_numpy(samples.reshape(1, -1).astype(np.float32))
    inputs = [audio]
    if prompt is not None:
        text = grpcclient.InferInput("PROMPT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[prompt.encode("utf-8")]], dtype=np.object_))
        inputs.append(text)
    return inputs
