"""Message transports chosen by URL: ``memory://`` (embedded) or ``kafka://`` (distributed)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from poise_common.bus.base import Bus, DeliveryPolicy, Handler, Hold, Subscription, current_delivery
from poise_common.metrics import BusMetrics

__all__ = ["Bus", "DeliveryPolicy", "Handler", "Hold", "Subscription", "create_bus", "current_delivery"]


def create_bus(url: str, metrics: BusMetrics | None = None) -> Bus:
    """``memory://?partitions=4&capacity=256`` or ``kafka://host:port[,host:port]?partitions=4``.

    Options: ``prefix`` (topic name prefix), ``partitions`` (per topic), for memory ``capacity``
    (records a partition holds beyond its slowest group before publishers wait), for Kafka
    ``replication``, ``compression`` (``zstd``, the default, ``gzip``, ``lz4`` or ``none``),
    ``linger_ms`` (how long a message may wait for others to share its request, 0-1000),
    ``batch_kb`` (the most one request carries for a partition, 16-1000), and how long the topics
    the services create keep messages: ``retention_ms`` (default 3 days) and, for frames and audio,
    ``media_retention_ms`` (default 1 hour), each from a minute to 14 days.
    """
    parsed = urlparse(url)
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    prefix = options.get("prefix", "")
    if parsed.scheme == "memory":
        from poise_common.bus.memory import MemoryBus

        return MemoryBus(
            partitions=int(options.get("partitions", 4)),
            capacity=int(options.get("capacity", 256)),
            prefix=prefix,
            metrics=metrics,
        )
    if parsed.scheme == "kafka":
        from poise_common.bus.kafka import (
            DEFAULT_BATCH_BYTES, DEFAULT_LINGER_MS, DEFAULT_MEDIA_RETENTION_MS, DEFAULT_RETENTION_MS, KafkaBus,
        )

        if not parsed.netloc:
            raise ValueError("a kafka:// bus URL needs host:port, e.g. kafka://127.0.0.1:9092")
        return KafkaBus(
            parsed.netloc,
            prefix=prefix,
            partitions=int(options.get("partitions", 4)),
            replication=int(options.get("replication", 1)),
            compression=_compression(options.get("compression", "zstd")),
            linger_ms=_bounded(options, "linger_ms", DEFAULT_LINGER_MS, 0, 1000),
            batch_bytes=1024 * _bounded(options, "batch_kb", DEFAULT_BATCH_BYTES // 1024, 16, 1000),
            retention_ms=_bounded(options, "retention_ms", DEFAULT_RETENTION_MS, MIN_RETENTION_MS, MAX_RETENTION_MS),
            media_retention_ms=_bounded(options, "media_retention_ms", DEFAULT_MEDIA_RETENTION_MS,
                                        MIN_RETENTION_MS, MAX_RETENTION_MS),
            metrics=metrics,
        )
    raise ValueError(f"unknown bus URL scheme {parsed.scheme!r}: use memory:// or kafka://")


# Topics' retention: at least a minute (Kafka checks every five anyway), at most two weeks, so that
# with Kafka's slack it stays well inside the 30 days an erasure must reach every copy in.
MIN_RETENTION_MS = 60_000
MAX_RETENTION_MS = 14 * 24 * 3600 * 1000

# zstd by default: frames travel as base64 JPEGs, and zstd takes back base64's quarter as gzip
# does for a fourteenth of the CPU (0.06 against 0.82 ms a frame); lz4 takes back nothing of it.
_COMPRESSIONS = ("zstd", "gzip", "lz4", "none")


def _compression(name: str) -> str | None:
    if name not in _COMPRESSIONS:
        raise ValueError(f"unknown Kafka compression {name!r}: use one of {', '.join(_COMPRESSIONS)}")
    return None if name == "none" else name


def _bounded(options: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = options.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"Kafka {name} must be a whole number from {low} to {high}, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"Kafka {name} must be from {low} to {high}, got {value}")
    return value
