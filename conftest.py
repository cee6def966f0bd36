"""Fixtures shared by every test folder: where the real recordings are, a private POISE_HOME, and a
video that is costly to decode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
MEDIA = REPO.parent / "shared" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The real recordings. Their absence is a broken checkout, so it fails rather than skips."""
    if not MEDIA.is_dir():
        pytest.fail(f"real media not found at {MEDIA}: tests need ../shared/media beside the repository")
    return MEDIA


@pytest.fixture()
def poise_home(tmp_path, monkeypatch) -> Path:
    """Each test gets its own local state folder."""
    home = tmp_path / "poise-home"
    home.mkdir(mode=0o700)  # as Poise makes it: one others can enter gets a warning on stderr
    monkeypatch.setenv("POISE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def kafka_broker():
    """One real Apache Kafka broker for the whole test session, stopped by PID at the end.

    A test that asks for it and cannot get it fails: Kafka is part of what is tested.
    """
    from poise_devstack.kafka import KafkaBroker

    broker = KafkaBroker()
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001 - reported as the failure of the test that asked
        broker.close()
        pytest.fail(f"could not start the Kafka broker: {exc}")
    yield broker
    broker.close()


@pytest.fixture()
def sessions(tmp_path):
    """Sessions on a fresh SQLite database migrated to the newest schema."""
    from poise_common.db.engine import create_db_engine, session_factory, upgrade

    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def costly_video(tmp_path_factory) -> Path:
    """30 s of 640x360 noise with AAC sound: it probes in a moment, but decoding its frames takes
    more than a CPU second (noise does not compress), so a tight CPU budget stops it part-way."""
    import av
    import numpy as np

    path = tmp_path_factory.mktemp("media") / "noise.mp4"
    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(16)]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt, video.options = 640, 360, "yuv420p", {"preset": "ultrafast"}
        sound = out.add_stream("aac", rate=16000, layout="mono")
        for index in range(30 * 30):
            frame = av.VideoFrame.from_ndarray(pictures[index % len(pictures)], format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 30)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for start in range(0, 30 * 16000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path
