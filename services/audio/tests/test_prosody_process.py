"""Prosody in a worker process: the same figures as in process, and a worker that dies is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import numpy as np
import pytest
from poise_audio.prosody import measure_prosody
from poise_audio.prosody_process import ProsodyProcess
from poise_audio.service import AudioService
from poise_audio.vad import detect_speech
from poise_common.bus.memory import MemoryBus
from poise_common.inference.local import LocalBackend
from poise_common.messages import AudioChunk, AudioEnd, AudioFeatures, Envelope, Topics
from poise_common.settings import PoiseSettings
from poise_devstack.speech_checks import load_audio_16k


@pytest.fixture
def lecture(media_dir):
    audio = load_audio_16k(media_dir / "lecture_60s.wav")
    return audio, detect_speech(audio, 16000, 2)


def test_the_worker_measures_exactly_what_measuring_in_process_does(lecture):
    audio, speech = lecture
    worker = ProsodyProcess()
    try:
        worker.start()
        there = worker.measure(audio, 16000, speech)
    finally:
        worker.stop()
    here = measure_prosody(audio, 16000, speech)
    assert there == here and there.pitch_mean_hz is not None
    for name in ("pitch_times_s", "pitch_hz", "level_times_s", "level_db"):
        assert np.array_equal(getattr(there.track, name), getattr(here.track, name)), name


def test_a_worker_that_dies_is_replaced_and_its_errors_reach_the_caller(lecture):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert base + 3 <= 19, f"the tests run at niceness {base}: no room to be nicer"
    audio, speech = lecture
    worker = ProsodyProcess(nice=3)
    try:
        first = worker.start()
        assert os.getpriority(os.PRIO_PROCESS, first) == base + 3
        with pytest.raises(ValueError, match="mono"):  # the worker's own error, and it serves on
            worker.measure(np.zeros((2, 16000), dtype=np.float32), 16000, speech)
        assert worker.pid == first
        os.kill(first, signal.SIGKILL)
        measured = worker.measure(audio, 16000, speech)
        second = worker.pid
    finally:
        worker.stop()
    assert second not in (None, first)
    assert measured == measure_prosody(audio, 16000, speech)


def test_praat_in_the_worker_leaves_the_callers_threads_running(lecture):
    """The reason for the worker: in process, Praat holds Python's lock through a pitch pass,
    so no other thread of the process runs Python meanwhile. Counted in ticks, not timed."""
    audio, speech = lecture
    long = np.tile(audio, 4)  # about four minutes: pitch passes that take a while
    long_speech = detect_speech(long, 16000, 2)

    def ticks_during(measure) -> tuple[int, float]:
        stop, ticks = threading.Event(), [0]

        def tick() -> None:
            while not stop.is_set():
                ticks[0] += 1
                time.sleep(0)  # gives the lock up each time round

        thread = threading.Thread(target=tick)
        thread.start()
        started = time.perf_counter()
        measure(long, 16000, long_speech)
        elapsed = time.perf_counter() - started
        stop.set()
        thread.join()
        return ticks[0], elapsed

    worker = ProsodyProcess()
    try:
        worker.start()
        elsewhere, elsewhere_s = ticks_during(worker.measure)
    finally:
        worker.stop()
    here, here_s = ticks_during(measure_prosody)
    # Ticks per second of measuring: far more while the worker measures than while Praat runs here.
    assert elsewhere / elsewhere_s > 3 * here / here_s, (elsewhere, elsewhere_s, here, here_s)


def test_the_audio_service_gives_the_same_features_with_and_without_the_worker(media_dir):
    pcm = (load_audio_16k(media_dir / "jfk.flac") * 32767).astype("<i2").tobytes()

    async def features(prosody_process: bool) -> AudioFeatures:
        settings = PoiseSettings(audio={"prosody_process": prosody_process})
        bus = MemoryBus()
        await bus.start()
        service = AudioService(bus, settings.audio, LocalBackend(settings))
        got: list[AudioFeatures] = []

        async def keep(env: Envelope) -> None:
            got.append(env.payload)

        await service.start()
        await bus.subscribe([Topics.FEATURES_AUDIO], "test", keep)
        start = Envelope(interview_id="i", answer_id="a", tenant="t", stream="audio", seq=0,
                         payload=AudioChunk(t_s=0.0, pcm=pcm))
        await bus.publish(Topics.MEDIA_AUDIO, start)
        await bus.publish(Topics.MEDIA_AUDIO, start.follow("audio", 1, AudioEnd(count=1, question="q")))
        for _ in range(600):
            if got:
                break
            await asyncio.sleep(0.05)
        await service.stop()
        await bus.stop()
        return got[0]

    with_worker, without = asyncio.run(features(True)), asyncio.run(features(False))
    assert with_worker.signals.pitch_mean_hz is not None
    assert with_worker.model_dump() == without.model_dump()
