"""In-process speech recognition yields the CPU to the face model: its threads run nicer."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from poise_common.inference.backend import FACE, SPEECH
from poise_common.inference.local import LocalBackend
from poise_common.settings import PoiseSettings
from poise_devstack.speech_checks import load_audio_16k
from poise_gateway.decode import encode_jpeg, iter_frames

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="per-thread niceness is Linux's")


def thread_niceness() -> dict[int, int]:
    """Each thread of this process and its nice value (field 19 of /proc/.../stat)."""
    found = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        found[int(task.name)] = int(fields[16])
    return found


def test_speech_threads_run_nicer_and_the_face_models_do_not(media_dir: Path):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    expected = base + 7
    assert expected <= 19, f"the tests run at niceness {base}: no room to be nicer"
    backend = LocalBackend(PoiseSettings(audio={"asr_nice": 7}))
    audio = load_audio_16k(media_dir / "jfk.flac")
    video = media_dir / "single_face.mp4"

    async def scenario() -> tuple[dict[int, int], dict[int, int], dict[int, int], list]:
        await backend.start({SPEECH, FACE})
        before = thread_niceness()
        segments = await backend.transcribe(audio, None)
        after_speech = thread_niceness()
        stream = backend.face_stream("s")
        for t, rgb in list(iter_frames(video, 5, 640))[:3]:
            await stream.detect(encode_jpeg(rgb, 85), int(t * 1000))
        after_face = thread_niceness()
        await stream.close()
        await backend.stop()
        return before, after_speech, after_face, segments

    before, after_speech, after_face, segments = asyncio.run(scenario())
    assert segments, "the speech model transcribed nothing"
    # The loading thread and the model's own worker threads (started while it loaded) are nicer.
    assert sum(1 for nice in before.values() if nice == expected) >= 2
    assert after_speech[os.getpid()] == base  # the process itself is not
    # The face model's threads start later, from threads of normal priority, and stay there.
    new = set(after_face) - set(after_speech)
    assert new and all(after_face[tid] == base for tid in new)
