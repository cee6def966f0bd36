"""NLP: content features of each answer's transcript."""

from __future__ import annotations

import asyncio
import logging

from poise_common.bus import Bus, Subscription
from poise_common.messages import Envelope, NlpFeatures, Topics, Transcript
from poise_common.settings import NlpSettings
from poise_nlp.features import analyse_transcript

log = logging.getLogger(__name__)

GROUP = "nlp"


class NlpService:
    def __init__(self, bus: Bus, settings: NlpSettings) -> None:
        self.bus = bus
        self.settings = settings
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe([Topics.TRANSCRIPTS], GROUP, self.handle)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close(drain=True)

    async def handle(self, env: Envelope) -> None:
        payload = env.payload
        if not isinstance(payload, Transcript):
            raise TypeError(f"nlp does not consume {payload.kind}")
        signals = await asyncio.to_thread(analyse_transcript, payload.segments, payload.question)
        await self.bus.publish(Topics.FEATURES_NLP, env.follow("nlp", 0, NlpFeatures(signals=signals)))
