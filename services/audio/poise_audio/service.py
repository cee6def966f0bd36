"""Audio: gather an answer's PCM chunks, then measure and transcribe the whole answer.

Speech recognition needs whole utterances, so the answer is analysed once its end marker
arrives. Chunks are kept by seq, so a replayed chunk replaces itself instead of doubling,
and an open answer holds its first chunk on the bus: a worker that dies mid-answer leaves
the whole answer to be replayed to the next one.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import numpy as np

from poise_audio.analysis import analyse_audio
from poise_audio.asr import as_mono_float32, prompt_for, repair_segments
from poise_audio.prosody_process import ProsodyProcess
from poise_common.bus import Bus, Hold, Subscription, current_delivery
from poise_common.inference.backend import SPEECH, InferenceBackend
from poise_common.messages import AudioChunk, AudioEnd, AudioFeatures, Envelope, Topics, Transcript
from poise_common.settings import AudioSettings

log = logging.getLogger(__name__)

GROUP = "audio"
SAMPLE_RATE = 16000


class AudioService:
    def __init__(self, bus: Bus, settings: AudioSettings, backend: InferenceBackend) -> None:
        self.bus = bus
        self.settings = settings
        self.backend = backend
        self._chunks: dict[str, dict[int, bytes]] = {}
        self._holds: dict[str, Hold] = {}
        self._subscription: Subscription | None = None
        self._prosody = ProsodyProcess(settings.asr_nice) if settings.prosody_process else None

    async def start(self) -> None:
        # A missing model fails here, at start, and the first answer pays no load time.
        await self.backend.start({SPEECH})
        if self._prosody is not None:
            await asyncio.to_thread(self._prosody.start)
        self._subscription = await self.bus.subscribe([Topics.MEDIA_AUDIO], GROUP, self.handle)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close(drain=True)
        await self.backend.stop()
        if self._prosody is not None:
            await asyncio.to_thread(self._prosody.stop)

    async def _analyse(self, pcm: bytes, question: str) -> tuple[Transcript, AudioFeatures]:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        samples /= 32768.0  # in place: one answer-long array rather than two at once
        samples = as_mono_float32(samples)
        duration = samples.size / SAMPLE_RATE
        raw = await self.backend.transcribe(samples, prompt_for(self.settings, question)) if samples.size else []
        segments = repair_segments(raw, duration)
        analyse = analyse_audio
        if self._prosody is not None:
            analyse = functools.partial(analyse_audio, prosody_of=self._prosody.measure)
        signals = await asyncio.to_thread(analyse, samples, SAMPLE_RATE, segments, self.settings)
        transcript = Transcript(question=question, duration_s=duration, segments=segments)
        return transcript, AudioFeatures(signals=signals)

    async def handle(self, env: Envelope) -> None:
        payload = env.payload
        if isinstance(payload, AudioChunk):
            if payload.sample_rate != SAMPLE_RATE:
                raise ValueError(f"audio must be {SAMPLE_RATE} Hz, got {payload.sample_rate}")
            if env.seq == 0 or env.answer_id not in self._holds:
                # seq 0 starts an answer, or its replay: hold it on the cursor that now owns it.
                self._holds[env.answer_id] = current_delivery().hold()
            self._chunks.setdefault(env.answer_id, {})[env.seq] = payload.pcm
        elif isinstance(payload, AudioEnd):
            chunks = self._chunks.pop(env.answer_id, {})
            missing = [seq for seq in range(payload.count) if seq not in chunks]
            pcm = b"".join(chunks[seq] for seq in sorted(chunks))
            transcript, features = await self._analyse(pcm, payload.question)
            if missing:
                features.warnings.append(f"{len(missing)} audio chunks were missing")
            await self.bus.publish(Topics.TRANSCRIPTS, env.follow("transcript", 0, transcript))
            await self.bus.publish(Topics.FEATURES_AUDIO, env.follow("audio", 0, features))
            hold = self._holds.pop(env.answer_id, None)
            if hold is not None:
                hold.release()
        else:
            raise TypeError(f"audio does not consume {payload.kind}")
