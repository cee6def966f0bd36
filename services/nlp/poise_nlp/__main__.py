"""``python -m poise_nlp``: the NLP service as its own process (transcripts -> content features)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from poise_common.bus import Bus
from poise_common.runtime import ServiceParts, main
from poise_common.settings import PoiseSettings


async def build(settings: PoiseSettings, bus: Bus, registry: CollectorRegistry) -> ServiceParts:
    """The NLP service on ``bus``."""
    from poise_nlp.service import NlpService  # imported here so that --help stays instant

    return ServiceParts(services=[NlpService(bus, settings.nlp)])


if __name__ == "__main__":
    main(
        "nlp",
        build,
        description="Poise NLP: reads transcripts, publishes content features (fillers, hedges, structure, ...).",
        reads=["nlp"],
    )
