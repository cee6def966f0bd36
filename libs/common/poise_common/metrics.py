"""Prometheus metrics, always created against an injected registry (never the global one).

Names follow ``poise_<service>_<what>_<unit>``; labels are topic and outcome, never ids.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def _name(service: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", service.lower())


class BusMetrics:
    """What a process's bus did: messages in and out, handler latency, outcomes, lag."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        prefix = f"poise_{_name(service)}"
        self.consumed = Counter(
            f"{prefix}_messages_consumed", "Messages handled, by outcome (ok, retried, dead_letter, poison).",
            ["topic", "outcome"], registry=registry,
        )
        self.published = Counter(
            f"{prefix}_messages_published", "Messages published.", ["topic"], registry=registry
        )
        self.handler_seconds = Histogram(
            f"{prefix}_handler_seconds", "Time spent in a message handler.", ["topic"],
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.lag = Gauge(
            f"{prefix}_consumer_lag_messages", "Records not yet handled, summed over assigned partitions.",
            ["topic"], registry=registry,
        )


class InferenceMetrics:
    """Model calls as the client sees them: latency by model and outcome, whichever backend."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.seconds = Histogram(
            f"poise_{_name(service)}_inference_seconds", "Client-side latency of one model call.",
            ["backend", "model", "outcome"], buckets=_LATENCY_BUCKETS, registry=registry,
        )


class NullMetrics:
    """Stands in when a caller wants no metrics; every method is a no-op."""

    class _Noop:
        def labels(self, *args, **kwargs):
            return self

        def inc(self, *args, **kwargs) -> None: ...

        def observe(self, *args, **kwargs) -> None: ...

        def set(self, *args, **kwargs) -> None: ...

    def __init__(self) -> None:
        self.consumed = self.published = self.handler_seconds = self.lag = self._Noop()
        self.seconds = self._Noop()
