"""Coarse time series of one answer's measurements, for plots: fixed bins from the answer's start.

Bin ``i`` covers ``[i * step_s, (i + 1) * step_s)``; the last one may be shorter. A bin with
nothing to measure is ``None`` (not measurable), never 0. The whole-answer figures are
computed elsewhere and never from these bins, so a series cannot change a score.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence

import numpy as np

# One second: fine enough to see a pause or a look away on a plot, small enough that a
# 20-minute answer's series stay a few kilobytes.
SERIES_STEP_S = 1.0
# Speech rate needs several words to mean anything, so it is counted over a window this
# long around each bin rather than within the bin itself.
RATE_WINDOW_S = 5.0
# A window with less speech than this has too few words for a rate.
RATE_MIN_SPEECH_S = 1.0


def bin_count(duration_s: float, step_s: float = SERIES_STEP_S) -> int:
    """How many bins cover ``duration_s`` (the last one partly)."""
    if not step_s > 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    return max(0, math.ceil(duration_s / step_s - 1e-9))


def bin_means(
    times: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, duration_s: float,
    step_s: float = SERIES_STEP_S, digits: int = 3,
) -> list[float | None]:
    """The mean of the ``values`` whose time falls in each bin; NaN values are left out."""
    n = bin_count(duration_s, step_s)
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape:
        raise ValueError(f"times and values differ in length: {t.shape} vs {v.shape}")
    index = np.floor(t / step_s).astype(np.int64) if t.size else np.zeros(0, dtype=np.int64)
    keep = np.isfinite(v) & (index >= 0) & (index < n)
    sums = np.bincount(index[keep], weights=v[keep], minlength=n)
    counts = np.bincount(index[keep], minlength=n)
    return [round(float(s / c), digits) if c else None for s, c in zip(sums, counts)]


def bin_coverage(
    spans: Iterable[tuple[float, float]], duration_s: float, step_s: float = SERIES_STEP_S, digits: int = 3
) -> list[float]:
    """The share of each bin that the non-overlapping ``spans`` (start, end) cover, 0..1."""
    n = bin_count(duration_s, step_s)
    covered = [0.0] * n
    for start, end in spans:
        first, last = max(0, int(start // step_s)), min(n - 1, int(end // step_s))
        for i in range(first, last + 1):
            covered[i] += max(0.0, min(end, (i + 1) * step_s) - max(start, i * step_s))
    return [round(min(1.0, c / _bin_length(i, duration_s, step_s)), digits) for i, c in enumerate(covered)]


def windowed_rate_per_min(
    event_times: Sequence[float], spans: Sequence[tuple[float, float]], duration_s: float,
    step_s: float = SERIES_STEP_S, window_s: float = RATE_WINDOW_S, min_span_s: float = RATE_MIN_SPEECH_S,
) -> list[float | None]:
    """Events per minute of time inside ``spans``, over a ``window_s`` window centred on each bin
    (e.g. words per minute of voiced time); None where the window holds no event or under
    ``min_span_s`` of spans (sound without words has no pace, as for the whole answer)."""
    events = sorted(event_times)
    rates: list[float | None] = []
    for i in range(bin_count(duration_s, step_s)):
        centre = (i + 0.5) * step_s
        lo, hi = centre - window_s / 2, centre + window_s / 2
        inside = sum(max(0.0, min(hi, end) - max(lo, start)) for start, end in spans)
        if inside < min_span_s:
            rates.append(None)
            continue
        count = bisect_left(events, hi) - bisect_left(events, lo)
        rates.append(round(count / (inside / 60.0), 1) if count else None)
    return rates


def _bin_length(i: int, duration_s: float, step_s: float) -> float:
    return max(1e-9, min(step_s, duration_s - i * step_s))
