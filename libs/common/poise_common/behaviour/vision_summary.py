"""Summarise one answer's per-frame face observations into :class:`VisionSignals`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import pstdev

from poise_common.behaviour.episodes import find_episodes
from poise_common.behaviour.series import SERIES_STEP_S, bin_means
from poise_common.signals import Episode, FaceObservation, VisionSignals

Frame = tuple[float, int, FaceObservation | None]

# Blendshape levels that count as the behaviour being shown. MediaPipe's scores sit
# near 0 on a neutral face and reach 0.7-0.9 on a clear expression; the exit levels
# (hysteresis) stop a value hovering at the entry level from splitting one episode.
SMILE_ON, SMILE_OFF = 0.5, 0.35
BROW_RAISE_ON, BROW_RAISE_OFF = 0.5, 0.35
# Lip pressing moves the blendshape less: neutral lips score 0-0.2.
LIP_PRESS_ON, LIP_PRESS_OFF = 0.3, 0.2

# Expressions shorter than this are flickers of the model or of speech, not displays.
SMILE_MIN_S = 0.5
BROW_RAISE_MIN_S = 0.3  # eyebrow flashes are brief, ~1/3 s
LIP_PRESS_MIN_S = 0.3
# Dips shorter than this (a frame or two) do not end an expression.
EXPRESSION_MAX_GAP_S = 0.3

# Looking away only matters when sustained; glances under 1.5 s are ordinary.
GAZE_AWAY_MIN_S = 1.5
GAZE_AWAY_MAX_GAP_S = 0.25
# Eyes shut this long or less are a blink, which does not interrupt eye contact.
BLINK_MAX_S = 0.5

# A blink: the eyeBlink blendshape rises to this level and falls back below the exit level.
BLINK_ON, BLINK_OFF = 0.5, 0.35
# Longer closures are eyes kept shut (or a squint), not blinks.
BLINK_EVENT_MAX_S = 1.0

# Head speed is only measured between face frames this close in time: across a longer
# hole (face lost) the path of the head is unknown.
HEAD_MOVEMENT_MAX_DT_S = 1.0


def summarise_vision(frames: Sequence[Frame], sample_fps: float) -> VisionSignals:
    """Facial behaviour over one answer.

    ``frames`` are (t_s, face_count, main face observation or None), one per sampled
    frame, sampled at ``sample_fps``. Ratios are shares of the frames with a face; with
    no face at all they are None (not measurable) and ``face_presence`` is 0.

    Blink counting needs sampling at 15 fps or more: a blink lasts 100-400 ms, so slower
    sampling misses many of them and the rate is an undercount (5 fps about halves it).
    """
    if not sample_fps > 0:
        raise ValueError(f"sample_fps must be positive, got {sample_fps}")
    frames = sorted(frames, key=lambda frame: frame[0])
    total = len(frames)
    with_face = [(t, obs) for t, _, obs in frames if obs is not None]
    presence = len(with_face) / total if total else 0.0
    multiple = sum(1 for _, count, _ in frames if count > 1) / total if total else 0.0
    if not with_face:
        return VisionSignals(
            frames_analysed=total, sample_fps=sample_fps, face_presence=presence, multiple_faces_ratio=multiple
        )

    observations = [obs for _, obs in with_face]
    n = len(observations)
    contact = _eye_contact(with_face, 1.0 / sample_fps)
    face_minutes = n / sample_fps / 60.0
    return VisionSignals(
        frames_analysed=total,
        sample_fps=sample_fps,
        face_presence=presence,
        multiple_faces_ratio=multiple,
        eye_contact_ratio=sum(contact) / n,
        smile_ratio=sum(o.smile >= SMILE_ON for o in observations) / n,
        brow_raise_ratio=sum(o.brow_raise >= BROW_RAISE_ON for o in observations) / n,
        lip_press_ratio=sum(o.lip_press >= LIP_PRESS_ON for o in observations) / n,
        blink_rate_per_min=_count_blinks(frames, sample_fps) / face_minutes,
        head_movement_deg_per_s=_head_movement(with_face),
        head_yaw_sd_deg=pstdev(o.yaw_deg for o in observations) if n > 1 else 0.0,
        episodes=_episodes(frames, contact, sample_fps),
    )


def eye_contact_series(
    frames: Sequence[Frame], sample_fps: float, duration_s: float, step_s: float = SERIES_STEP_S
) -> list[float | None]:
    """Eye contact second by second, for plots: the share of each bin's face frames with eye
    contact, blinks bridged as for ``eye_contact_ratio``; None for a bin without a face."""
    with_face = [(t, obs) for t, _, obs in sorted(frames, key=lambda frame: frame[0]) if obs is not None]
    contact = _eye_contact(with_face, 1.0 / sample_fps)
    return bin_means([t for t, _ in with_face], [float(c) for c in contact], duration_s, step_s)


def _eye_contact(with_face: Sequence[tuple[float, FaceObservation]], period_s: float) -> list[bool]:
    """Eye contact per face frame, with blinks bridged.

    A run of closed-eye frames lasting no longer than a blink takes the state before it
    (or after it, at the start): nobody loses eye contact by blinking. Longer closures
    and looking away stay as observed.
    """
    contact = [obs.eye_contact for _, obs in with_face]
    i = 0
    while i < len(with_face):
        if with_face[i][1].eyes_open:
            i += 1
            continue
        end = i
        while end < len(with_face) and not with_face[end][1].eyes_open:
            end += 1
        closed_s = with_face[end - 1][0] - with_face[i][0] + period_s
        if closed_s <= BLINK_MAX_S:
            if i > 0:
                contact[i:end] = [contact[i - 1]] * (end - i)
            elif end < len(with_face):
                contact[i:end] = [contact[end]] * (end - i)
        i = end
    return contact


def _count_blinks(frames: Sequence[Frame], sample_fps: float) -> int:
    times = [t for t, _, _ in frames]
    values = [obs.blink if obs is not None else None for _, _, obs in frames]
    closures = find_episodes(
        times,
        values,
        behaviour="blink",
        on=BLINK_ON,
        off=BLINK_OFF,
        min_duration_s=0.0,
        max_gap_s=0.0,
        sample_period_s=1.0 / sample_fps,
    )
    return sum(1 for e in closures if e.end_s - e.start_s <= BLINK_EVENT_MAX_S)


def _head_movement(with_face: Sequence[tuple[float, FaceObservation]]) -> float | None:
    """Mean over frame pairs of the mean absolute change of yaw, pitch and roll per second."""
    speeds = []
    for (t0, a), (t1, b) in zip(with_face, with_face[1:]):
        dt = t1 - t0
        if dt <= 0 or dt > HEAD_MOVEMENT_MAX_DT_S:
            continue
        change = (
            _angle_change(a.yaw_deg, b.yaw_deg)
            + _angle_change(a.pitch_deg, b.pitch_deg)
            + _angle_change(a.roll_deg, b.roll_deg)
        ) / 3
        speeds.append(change / dt)
    return sum(speeds) / len(speeds) if speeds else None


def _angle_change(a: float, b: float) -> float:
    return abs(math.remainder(b - a, 360.0))


def _episodes(frames: Sequence[Frame], contact: Sequence[bool], sample_fps: float) -> list[Episode]:
    times = [t for t, _, _ in frames]
    observations = [obs for _, _, obs in frames]
    period = 1.0 / sample_fps

    def expression(attr: str, on: float, off: float, min_s: float) -> list[Episode]:
        values = [getattr(obs, attr) if obs is not None else None for obs in observations]
        return find_episodes(
            times,
            values,
            behaviour=attr,
            on=on,
            off=off,
            min_duration_s=min_s,
            max_gap_s=EXPRESSION_MAX_GAP_S,
            sample_period_s=period,
        )

    # Looking away is yes/no: 1 for a face frame without contact, None without a face.
    contact_of_face = iter(contact)
    away = [None if obs is None else 0.0 if next(contact_of_face) else 1.0 for obs in observations]
    gaze_away = find_episodes(
        times,
        away,
        behaviour="gaze_away",
        on=0.5,
        off=0.5,
        min_duration_s=GAZE_AWAY_MIN_S,
        max_gap_s=GAZE_AWAY_MAX_GAP_S,
        sample_period_s=period,
    )
    episodes = [
        *expression("smile", SMILE_ON, SMILE_OFF, SMILE_MIN_S),
        *expression("brow_raise", BROW_RAISE_ON, BROW_RAISE_OFF, BROW_RAISE_MIN_S),
        *expression("lip_press", LIP_PRESS_ON, LIP_PRESS_OFF, LIP_PRESS_MIN_S),
        # A yes/no behaviour has no strength to report.
        *(e.model_copy(update={"peak": None}) for e in gaze_away),
    ]
    return sorted(episodes, key=lambda e: (e.start_s, e.behaviour))
