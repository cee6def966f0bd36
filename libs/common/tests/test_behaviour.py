"""Episodes and vision summaries on synthetic signals whose right answers are known."""

from __future__ import annotations

import math

import pytest

from poise_common.behaviour.episodes import find_episodes
from poise_common.behaviour.vision_summary import (
    BLINK_ON,
    SMILE_ON,
    summarise_vision,
)
from poise_common.signals import FaceObservation


def _times(n: int, fps: float) -> list[float]:
    return [i / fps for i in range(n)]


def _episode(times, values, **overrides):
    params = dict(behaviour="x", on=0.5, off=0.3, min_duration_s=0.0, max_gap_s=0.0)
    params.update(overrides)
    return find_episodes(times, values, **params)


class TestFindEpisodes:
    def test_hysteresis_keeps_one_episode_between_off_and_on(self):
        values = [0.0, 0.6, 0.4, 0.35, 0.8, 0.1, 0.0]
        (episode,) = _episode(_times(7, 10), values)
        # Samples 1..4 stay at or above off; each sample stands for 0.1 s centred on it.
        assert episode.start_s == pytest.approx(0.05)
        assert episode.end_s == pytest.approx(0.45)
        assert episode.peak == pytest.approx(0.8)
        assert episode.behaviour == "x"

    def test_values_between_off_and_on_never_start_an_episode(self):
        assert _episode(_times(5, 10), [0.2, 0.45, 0.49, 0.45, 0.2]) == []

    def test_leaves_below_off_and_reenters_only_at_on(self):
        values = [0.6, 0.2, 0.45, 0.6, 0.0]
        episodes = _episode(_times(5, 10), values)
        assert [(e.start_s, e.end_s) for e in episodes] == [
            pytest.approx((0.0, 0.05)),  # clamped at 0
            pytest.approx((0.25, 0.35)),
        ]

    def test_short_gaps_merge_and_long_gaps_do_not(self):
        times = _times(12, 10)
        values = [0.9, 0.9, 0.0, 0.9, 0.9, 0.0, 0.0, 0.0, 0.9, 0.9, 0.0, 0.0]
        merged = _episode(times, values, max_gap_s=0.15)
        # The one-sample dip (0.1 s) merges; the three-sample hole (0.3 s) does not.
        assert [(round(e.start_s, 3), round(e.end_s, 3)) for e in merged] == [(0.0, 0.45), (0.75, 0.95)]
        assert len(_episode(times, values, max_gap_s=0.05)) == 3
        assert len(_episode(times, values, max_gap_s=0.31)) == 1

    def test_none_ends_an_episode_and_is_never_bridged(self):
        values = [0.9, 0.9, None, 0.9, 0.9]
        episodes = _episode(_times(5, 10), values, max_gap_s=10.0)
        assert [(round(e.start_s, 3), round(e.end_s, 3)) for e in episodes] == [(0.0, 0.15), (0.25, 0.45)]

    def test_nan_counts_as_missing(self):
        assert len(_episode(_times(3, 10), [0.9, math.nan, 0.9], max_gap_s=10.0)) == 2

    def test_min_duration_drops_short_episodes(self):
        values = [0.0, 0.9, 0.0, 0.9, 0.9, 0.9, 0.0]
        episodes = _episode(_times(7, 10), values, min_duration_s=0.25)
        assert [(round(e.start_s, 3), round(e.end_s, 3)) for e in episodes] == [(0.25, 0.55)]

    def test_episode_running_at_the_end_is_closed_at_the_last_sample(self):
        (episode,) = _episode([0.0, 0.5, 1.0], [0.0, 0.7, 0.9])
        assert episode.end_s == pytest.approx(1.25)

    def test_period_defaults_to_median_spacing_despite_holes(self):
        times = [0.0, 0.1, 0.2, 5.0, 5.1]
        (first, second) = _episode(times, [0.9, 0.0, 0.0, 0.9, 0.0])
        assert first.end_s == pytest.approx(0.05)
        assert second.start_s == pytest.approx(4.95)

    def test_explicit_period_wins(self):
        (episode,) = _episode([1.0, 1.1], [0.9, 0.0], sample_period_s=0.5)
        assert (episode.start_s, episode.end_s) == pytest.approx((0.75, 1.25))

    def test_empty_input(self):
        assert _episode([], []) == []

    def test_rejects_bad_arguments(self):
        with pytest.raises(ValueError):
            _episode([0.0, 0.1], [0.5])
        with pytest.raises(ValueError):
            _episode([0.0], [0.5], on=0.3, off=0.5)
        with pytest.raises(ValueError):
            _episode([0.0], [0.5], sample_period_s=0.0)


def _face(**fields) -> FaceObservation:
    base = dict(
        yaw_deg=0.0,
        pitch_deg=0.0,
        roll_deg=0.0,
        gaze_x=0.0,
        gaze_y=0.0,
        eyes_open=True,
        eye_contact=True,
        smile=0.0,
        brow_raise=0.0,
        lip_press=0.0,
        lip_pucker=0.0,
        jaw_open=0.0,
        blink=0.05,
        box=(0.3, 0.2, 0.4, 0.6),
    )
    base.update(fields)
    return FaceObservation(**base)


def _closed(**fields) -> FaceObservation:
    return _face(eyes_open=False, eye_contact=False, blink=0.9, **fields)


class TestSummariseVision:
    def test_no_frames(self):
        signals = summarise_vision([], 10.0)
        assert signals.frames_analysed == 0
        assert signals.face_presence == 0.0
        assert signals.eye_contact_ratio is None

    def test_no_face_means_not_measurable(self):
        signals = summarise_vision([(t, 0, None) for t in _times(20, 10)], 10.0)
        assert signals.frames_analysed == 20
        assert signals.face_presence == 0.0
        assert signals.multiple_faces_ratio == 0.0
        for name in (
            "eye_contact_ratio",
            "smile_ratio",
            "brow_raise_ratio",
            "lip_press_ratio",
            "blink_rate_per_min",
            "head_movement_deg_per_s",
            "head_yaw_sd_deg",
        ):
            assert getattr(signals, name) is None, name
        assert signals.episodes == []

    def test_presence_and_ratios_count_face_frames_only(self):
        times = _times(10, 10)
        frames = [(t, 0, None) for t in times[:2]]
        frames += [(t, 2, _face(smile=0.9, eye_contact=False)) for t in times[2:4]]
        frames += [(t, 1, _face(smile=0.1, brow_raise=0.7, lip_press=0.4)) for t in times[4:]]
        signals = summarise_vision(frames, 10.0)
        assert signals.face_presence == pytest.approx(0.8)
        assert signals.multiple_faces_ratio == pytest.approx(0.2)
        assert signals.smile_ratio == pytest.approx(2 / 8)
        assert signals.eye_contact_ratio == pytest.approx(6 / 8)
        assert signals.brow_raise_ratio == pytest.approx(6 / 8)
        assert signals.lip_press_ratio == pytest.approx(6 / 8)

    def test_smile_threshold_is_inclusive(self):
        frames = [(t, 1, _face(smile=SMILE_ON)) for t in _times(10, 10)]
        assert summarise_vision(frames, 10.0).smile_ratio == 1.0

    def test_frames_out_of_order_are_sorted(self):
        frames = [(t, 1, _face(smile=0.9 if t >= 1.0 else 0.0)) for t in _times(30, 10)]
        signals = summarise_vision(list(reversed(frames)), 10.0)
        (smile,) = [e for e in signals.episodes if e.behaviour == "smile"]
        assert smile.start_s == pytest.approx(0.95)

    def test_smile_episode_with_peak(self):
        values = [0.0] * 10 + [0.6, 0.8, 0.95, 0.7, 0.6, 0.55, 0.4, 0.6] + [0.0] * 10
        frames = [(t, 1, _face(smile=v)) for t, v in zip(_times(len(values), 10), values)]
        (smile,) = [e for e in summarise_vision(frames, 10.0).episodes if e.behaviour == "smile"]
        assert smile.start_s == pytest.approx(0.95)
        assert smile.end_s == pytest.approx(1.75)
        assert smile.peak == pytest.approx(0.95)

    def test_short_smile_is_not_an_episode(self):
        values = [0.0] * 5 + [0.9, 0.9] + [0.0] * 5  # 0.2 s
        frames = [(t, 1, _face(smile=v)) for t, v in zip(_times(len(values), 10), values)]
        assert [e for e in summarise_vision(frames, 10.0).episodes if e.behaviour == "smile"] == []

    def test_blinks_are_counted_per_face_minute(self):
        fps = 15.0
        blinks = {150, 151, 400, 401, 402, 700}  # three blinks of 1-3 frames
        long_closure = set(range(800, 845))  # 3 s with eyes shut: not a blink
        frames = [
            (t, 1, _closed() if i in blinks or i in long_closure else _face())
            for i, t in enumerate(_times(int(60 * fps), fps))
        ]
        assert summarise_vision(frames, fps).blink_rate_per_min == pytest.approx(3.0)

    def test_blink_rate_is_over_time_with_a_face(self):
        fps = 15.0
        blinks = {60, 200, 300}
        # 30 s with a face and three blinks, then 30 s without a face.
        frames = [
            (t, 1, _closed() if i in blinks else _face()) if t < 30.0 else (t, 0, None)
            for i, t in enumerate(_times(int(60 * fps), fps))
        ]
        assert summarise_vision(frames, fps).blink_rate_per_min == pytest.approx(6.0)

    def test_blink_must_reach_the_blink_level(self):
        frames = [(t, 1, _face(blink=BLINK_ON - 0.01)) for t in _times(30, 15)]
        assert summarise_vision(frames, 15.0).blink_rate_per_min == 0.0

    def test_blinks_do_not_break_eye_contact_but_closed_eyes_do(self):
        times = _times(100, 10)
        frames = [(t, 1, _face()) for t in times]
        for i in (10, 11, 50):  # blinks: 0.2 s and 0.1 s
            frames[i] = (times[i], 1, _closed())
        assert summarise_vision(frames, 10.0).eye_contact_ratio == 1.0
        for i in range(60, 80):  # 2 s with eyes shut
            frames[i] = (times[i], 1, _closed())
        signals = summarise_vision(frames, 10.0)
        assert signals.eye_contact_ratio == pytest.approx(0.8)
        (away,) = [e for e in signals.episodes if e.behaviour == "gaze_away"]
        assert (away.start_s, away.end_s) == pytest.approx((5.95, 7.95))
        assert away.peak is None

    def test_blink_before_looking_away_stays_away(self):
        times = _times(10, 10)
        frames = [(t, 1, _face(eye_contact=False)) for t in times]
        frames[5] = (times[5], 1, _closed())
        assert summarise_vision(frames, 10.0).eye_contact_ratio == 0.0

    def test_gaze_away_needs_one_and_a_half_seconds(self):
        times = _times(100, 10)
        away_short = set(range(10, 20))  # 1.0 s
        away_long = set(range(40, 56))  # 1.6 s
        frames = [(t, 1, _face(eye_contact=not (i in away_short or i in away_long))) for i, t in enumerate(times)]
        episodes = [e for e in summarise_vision(frames, 10.0).episodes if e.behaviour == "gaze_away"]
        assert [(round(e.start_s, 2), round(e.end_s, 2)) for e in episodes] == [(3.95, 5.55)]

    def test_head_movement_and_yaw_spread(self):
        fps = 10.0
        times = _times(21, fps)
        # Yaw sweeps 2 degrees per frame (20 deg/s), pitch and roll still.
        frames = [(t, 1, _face(yaw_deg=-20.0 + 2.0 * i)) for i, t in enumerate(times)]
        signals = summarise_vision(frames, fps)
        assert signals.head_movement_deg_per_s == pytest.approx(20.0 / 3)
        expected_sd = math.sqrt(sum((2.0 * i - 20.0) ** 2 for i in range(21)) / 21)
        assert signals.head_yaw_sd_deg == pytest.approx(expected_sd)

    def test_head_movement_ignores_gaps_over_a_second(self):
        frames = [
            (0.0, 1, _face(yaw_deg=0.0)),
            (0.1, 1, _face(yaw_deg=1.0)),
            (0.5, 0, None),
            (3.0, 1, _face(yaw_deg=90.0)),  # the jump across the 2.9 s hole is not a movement
            (3.1, 1, _face(yaw_deg=90.0, roll_deg=3.0)),
        ]
        signals = summarise_vision(frames, 10.0)
        assert signals.head_movement_deg_per_s == pytest.approx(((1.0 / 3) / 0.1 + (3.0 / 3) / 0.1) / 2)

    def test_single_face_frame(self):
        signals = summarise_vision([(0.0, 1, _face(yaw_deg=10.0))], 10.0)
        assert signals.head_yaw_sd_deg == 0.0
        assert signals.head_movement_deg_per_s is None
        assert signals.face_presence == 1.0

    def test_rejects_non_positive_fps(self):
        with pytest.raises(ValueError):
            summarise_vision([], 0.0)
