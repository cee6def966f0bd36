"""``python -m poise_audio``: the audio service as its own process (PCM -> prosody and transcript)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from poise_common.bus import Bus
from poise_common.runtime import ServiceParts, main
from poise_common.settings import PoiseSettings


async def build(settings: PoiseSettings, bus: Bus, registry: CollectorRegistry) -> ServiceParts:
    """The audio service on ``bus``; its start() loads the speech model and fails if it is missing."""
    from poise_common.inference.backend import create_backend
    from poise_common.metrics import InferenceMetrics
    from poise_audio.service import AudioService  # faster-whisper is slow to import: not for --help

    return ServiceParts(services=[AudioService(bus, settings.audio, create_backend(settings, InferenceMetrics(registry, "audio")))])


if __name__ == "__main__":
    main(
        "audio",
        build,
        description="Poise audio: reads 16 kHz audio, publishes voice activity, prosody and the transcript.",
        reads=["audio", "inference"],
    )
