"""Turn a sampled signal into episodes: stretches of time in which a behaviour was present.

Generic on purpose: vision uses it for smiles and gaze aversion, audio for long pauses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from poise_common.signals import Episode


@dataclass
class _Run:
    """Indices (inclusive) of the samples that belong to one episode."""

    first: int
    last: int


def find_episodes(
    times: Sequence[float],
    values: Sequence[float | None],
    *,
    behaviour: str,
    on: float,
    off: float,
    min_duration_s: float,
    max_gap_s: float,
    sample_period_s: float | None = None,
) -> list[Episode]:
    """Episodes in which ``values`` is high, with hysteresis.

    An episode starts at a sample with ``value >= on`` and lasts while ``value >= off``;
    the gap between ``off`` and ``on`` keeps a signal that hovers around one threshold
    from flickering into many short episodes. A ``None`` value (not measurable, e.g. no
    face in the frame) ends an episode, and episodes are never merged across it: we do
    not claim a behaviour went on while it could not be observed.

    Each sample stands for the interval of one sample period centred on it, so an
    episode runs from half a period before its first sample to half a period after its
    last sample at or above ``off``. A one-sample episode therefore lasts one period,
    and the gap between two episodes equals the time spent below ``off`` between them.
    Episodes whose gap is shorter than ``max_gap_s`` are merged; then those shorter than
    ``min_duration_s`` are dropped. ``peak`` is the largest value inside the episode.

    ``times`` must be increasing seconds. ``sample_period_s`` defaults to the median
    spacing of ``times``, which ignores the holes that dropped samples leave. Start
    times are clamped at 0.
    """
    if len(times) != len(values):
        raise ValueError(f"times and values differ in length ({len(times)} != {len(values)})")
    if off > on:
        raise ValueError(f"off ({off}) must not be above on ({on})")
    if not times:
        return []
    half = _half_period(times, sample_period_s)

    episodes: list[Episode] = []
    for segment in _measured_segments(values):
        runs = _hysteresis_runs(values, segment, on, off)
        runs = _merge_close(times, runs, half, max_gap_s)
        for run in runs:
            start = max(0.0, times[run.first] - half)
            end = times[run.last] + half
            if end - start < min_duration_s:
                continue
            peak = max(v for v in values[run.first : run.last + 1] if v is not None)
            episodes.append(Episode(behaviour=behaviour, start_s=start, end_s=end, peak=peak))
    return episodes


def _half_period(times: Sequence[float], sample_period_s: float | None) -> float:
    if sample_period_s is not None:
        if not sample_period_s > 0:
            raise ValueError(f"sample_period_s must be positive, got {sample_period_s}")
        return sample_period_s / 2
    steps = [b - a for a, b in zip(times, times[1:]) if b > a]
    # A single sample has no spacing to measure: it then stands for an instant.
    return median(steps) / 2 if steps else 0.0


def _measured_segments(values: Sequence[float | None]) -> list[range]:
    """Index ranges of consecutive samples that are not ``None`` (nor NaN)."""
    segments: list[range] = []
    start: int | None = None
    for i, value in enumerate(values):
        missing = value is None or math.isnan(value)
        if missing and start is not None:
            segments.append(range(start, i))
            start = None
        elif not missing and start is None:
            start = i
    if start is not None:
        segments.append(range(start, len(values)))
    return segments


def _hysteresis_runs(values: Sequence[float | None], segment: range, on: float, off: float) -> list[_Run]:
    runs: list[_Run] = []
    current: _Run | None = None
    for i in segment:
        value = values[i]
        assert value is not None  # segments hold measured samples only
        if current is None:
            if value >= on:
                current = _Run(i, i)
        elif value >= off:
            current.last = i
        else:
            runs.append(current)
            current = None
    if current is not None:
        runs.append(current)
    return runs


def _merge_close(times: Sequence[float], runs: list[_Run], half: float, max_gap_s: float) -> list[_Run]:
    merged: list[_Run] = []
    for run in runs:
        if merged:
            gap = (times[run.first] - half) - (times[merged[-1].last] + half)
            if gap < max_gap_s:
                merged[-1].last = run.last
                continue
        merged.append(run)
    return merged
