"""Time series for plots: bins, coverage, windowed rates and eye contact second by second."""

from __future__ import annotations

import math

import pytest

from poise_common.behaviour.series import bin_count, bin_coverage, bin_means, windowed_rate_per_min
from poise_common.behaviour.vision_summary import eye_contact_series, summarise_vision
from poise_common.signals import FaceObservation


def _face(contact: bool, eyes_open: bool = True) -> FaceObservation:
    return FaceObservation(
        yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, gaze_x=0.0, gaze_y=0.0, eyes_open=eyes_open,
        eye_contact=contact and eyes_open, smile=0.0, brow_raise=0.0, lip_press=0.0, lip_pucker=0.0,
        jaw_open=0.0, blink=0.0 if eyes_open else 0.9, box=(0.3, 0.3, 0.3, 0.3),
    )


def test_bins_cover_the_duration_with_a_short_last_bin():
    assert bin_count(3.0) == 3
    assert bin_count(3.2) == 4
    assert bin_count(0.0) == 0
    with pytest.raises(ValueError):
        bin_count(3.0, step_s=0.0)


def test_bin_means_leave_out_nan_and_mark_empty_bins_not_measurable():
    times = [0.1, 0.6, 1.2, 1.7, 3.5, 9.0]
    values = [1.0, 3.0, math.nan, math.nan, 5.0, 7.0]  # the 9 s value is past the end
    assert bin_means(times, values, 4.0) == [2.0, None, None, 5.0]
    with pytest.raises(ValueError):
        bin_means([0.1], [1.0, 2.0], 2.0)


def test_coverage_is_a_share_of_each_bin_and_of_a_short_last_bin():
    # 0.5..2.25 covers half of bin 0, all of bin 1 and a quarter of bin 2; the last bin is 0.5 s long.
    assert bin_coverage([(0.5, 2.25), (3.25, 3.5)], 3.5) == [0.5, 1.0, 0.25, 0.5]
    assert bin_coverage([], 2.0) == [0.0, 0.0]


def test_windowed_rate_counts_events_per_minute_of_spanned_time():
    # Two words a second for 10 s of speech: 120 per minute wherever the window is inside speech.
    words = [i / 2 + 0.25 for i in range(20)]
    rates = windowed_rate_per_min(words, [(0.0, 10.0)], 14.0)
    assert rates[5] == pytest.approx(120.0)
    assert rates[0] == pytest.approx(120.0)  # the window is clipped to the speech it holds
    # From 12 s the window holds under a second of speech: no rate rather than a low one.
    assert rates[12:] == [None, None]


def test_eye_contact_series_matches_frames_and_bridges_blinks():
    fps = 10.0
    frames = []
    for i in range(50):
        t = i / fps
        if t < 2.0:
            face = _face(True, eyes_open=not 0.5 <= t < 0.7)  # a 0.2 s blink keeps eye contact
        elif t < 4.0:
            face = _face(False)
        else:
            face = None
        frames.append((t, 0 if face is None else 1, face))
    series = eye_contact_series(frames, fps, 5.0)
    assert series == [1.0, 1.0, 0.0, 0.0, None]
    # The whole-answer ratio is the mean over the face frames the bins hold.
    assert summarise_vision(frames, fps).eye_contact_ratio == pytest.approx(0.5)
