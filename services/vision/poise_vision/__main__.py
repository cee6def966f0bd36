"""``python -m poise_vision``: the vision service as its own process (frames -> face features)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from poise_common.bus import Bus
from poise_common.runtime import ServiceParts, main
from poise_common.settings import PoiseSettings


async def build(settings: PoiseSettings, bus: Bus, registry: CollectorRegistry) -> ServiceParts:
    """The vision service on ``bus``; its start() loads the face model and fails if it is missing."""
    from poise_common.inference.backend import create_backend
    from poise_common.metrics import InferenceMetrics
    from poise_vision.service import VisionService  # MediaPipe is slow to import: not for --help

    return ServiceParts(services=[VisionService(bus, create_backend(settings, InferenceMetrics(registry, "vision")),
                                                batch_frames=settings.vision.feature_batch_frames)])


if __name__ == "__main__":
    main(
        "vision",
        build,
        description="Poise vision: reads sampled frames, publishes face landmarks, blendshapes and head pose.",
        reads=["vision", "inference"],
    )
