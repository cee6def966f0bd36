"""What a scorecard says about real recordings (../shared/media, see its SOURCES.md, and the bundled
sample), scored in one process as `poise score` scores them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from poise.embedded import EmbeddedPoise, uploads_for
from poise_common.settings import PoiseSettings

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample_interview.mp4"


def score(paths: list[Path], policy: str | None = None) -> dict:
    async def run() -> dict:
        async with EmbeddedPoise(PoiseSettings(), policy) as poise:
            return await poise.score(uploads_for(paths, None))
    return asyncio.run(run())


def competency(card: dict, name: str) -> dict:
    return next(c for c in card["competencies"] if c["name"] == name)


@pytest.fixture(scope="module")
def sample_card(tmp_path_factory, monkeypatch_module) -> dict:
    monkeypatch_module.setenv("POISE_HOME", str(tmp_path_factory.mktemp("home")))
    return score([SAMPLE])


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_sample_smile_evidence_is_its_clearest_smile_not_its_first(sample_card):
    # The clip cries first and smiles from about 12 s to its end (SOURCES.md); the smile blendshape
    # fires during both, so evidence chosen by time would show only the crying.
    empathy = competency(sample_card, "empathy")
    smiles = [(e["start_s"], e["end_s"]) for e in empathy["evidence"] if e["kind"] == "episode"]
    assert any(start < 13.0 and end > 19.0 for start, end in smiles), smiles
    assert smiles == sorted(smiles)
    behaviours = {c["behaviour"] for c in empathy["contributions"]}
    assert "smiling on camera" in behaviours and "warm tone" not in behaviours
