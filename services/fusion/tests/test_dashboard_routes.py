"""The dashboard's routes: its page and assets come from here only, under a strict CSP; the session
route tells the page what the key may do; and a scorecard carries the bands and series it draws."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_common.settings import PoiseSettings
from poise_common.signals import AudioSeries, AudioSignals, NlpSignals
from poise_fusion.assemble import EvidenceRules, build_answer, build_scorecard
from poise_fusion.dashboard import STATIC, create_dashboard_router
from poise_fusion.framework import available_frameworks

# What may name another origin in an asset: only XML namespaces, which load nothing.
_NAMESPACE = re.compile(r"http://www\.w3\.org/2000/svg")


@pytest.fixture()
def keys(sessions):
    return KeyStore(sessions)


def fetch(keys: KeyStore, paths: list[str], headers: dict | None = None, api_base: str = "") -> list[httpx.Response]:
    app = FastAPI()
    app.include_router(create_dashboard_router(keys, api_base=api_base))

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fusion",
                                     headers=headers or {}) as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(scenario())


def test_the_page_loads_only_its_own_assets_under_a_strict_policy(keys):
    bare, page = fetch(keys, ["/dashboard", "/dashboard/"])
    assert bare.status_code == 308 and bare.headers["location"] == "dashboard/"
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "unsafe" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    # No inline script or style: the policy would refuse them anyway, so none may be relied on.
    assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
    assert " style=" not in page.text and "<style" not in page.text
    referenced = set(re.findall(r'(?:src|href)="static/([^"]+)"', page.text))
    assert referenced >= {"app.js", "dashboard.css", "favicon.svg"}

    # Every module the page runs, followed through its imports, is served from here with its type.
    seen, todo = {}, ["app.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        (asset,) = fetch(keys, [f"/dashboard/static/{name}"])
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].startswith("text/javascript")
        assert asset.headers["x-content-type-options"] == "nosniff"
        seen[name] = asset.text
        todo += re.findall(r'^import [^;]+ from "\./([a-z_]+\.js)";', asset.text, flags=re.MULTILINE)
    assert {"api.js", "list.js", "scorecard.js", "answer.js", "charts.js", "audit.js", "dom.js"} <= set(seen)
    for name, text in seen.items():
        assert not re.search(r'from "(?!\./)', text), name  # imports stay in this folder
        assert "innerHTML" not in text and "eval(" not in text and 'setAttribute("style"' not in text, name
    for path in STATIC.iterdir():
        assert re.findall(r"https?://", _NAMESPACE.sub("", path.read_text(encoding="utf-8"))) == [], path.name


def test_unknown_and_sneaky_asset_names_are_404(keys):
    for response in fetch(keys, ["/dashboard/static/nope.js", "/dashboard/static/index.html",
                                 "/dashboard/static/..%2Fdashboard.py", "/dashboard/static/%2E%2E"]):
        assert response.status_code == 404


def test_a_configured_api_base_is_given_to_the_page_and_allowed_by_its_policy(keys):
    (page,) = fetch(keys, ["/dashboard/"], api_base='https://api.example.test/poise"><x')
    assert '<meta name="poise-api-base" content="https://api.example.test/poise&quot;&gt;&lt;x">' in page.text
    policy = page.headers["content-security-policy"]
    assert "connect-src 'self' https://api.example.test;" in policy
    assert "media-src 'self' https://api.example.test;" in policy
    (plain,) = fetch(keys, ["/dashboard/"])
    assert '<meta name="poise-api-base" content="">' in plain.text
    assert "example" not in plain.headers["content-security-policy"]


def test_the_session_says_what_the_key_may_do_and_needs_a_reader(keys):
    reader = keys.create("acme", ["scores:read"])
    reviewer = keys.create("acme", ["scores:read", "scores:review"])
    admin = keys.create("globex", ["admin"])
    writer = keys.create("acme", ["interviews:write"])
    sessions = [fetch(keys, ["/dashboard/session"], {"Authorization": f"Bearer {key}"})[0]
                for key in (reader, reviewer, admin, writer, "not-a-key")]
    as_reader, as_reviewer, as_admin, as_writer, unknown = sessions
    assert as_reader.status_code == 200
    assert as_reader.json()["tenant"] == "acme"
    assert not as_reader.json()["may_review"] and not as_reader.json()["is_admin"]
    assert as_reviewer.json()["may_review"] and not as_reviewer.json()["is_admin"]
    assert as_admin.json()["tenant"] == "globex" and as_admin.json()["may_review"] and as_admin.json()["is_admin"]
    assert as_writer.status_code == 403 and unknown.status_code == 401
    roles = {r["name"]: r for r in as_reader.json()["roles"]}
    assert set(roles) == set(available_frameworks())
    assert {c["name"] for c in roles["generic"]["competencies"]} == {
        c.name for c in available_frameworks()["generic"].competencies}


def test_a_scorecard_carries_the_bands_and_the_series_the_dashboard_draws():
    framework = available_frameworks()["generic"]
    fps, duration = 10.0, 6.0
    face = {"yaw_deg": 0.0, "pitch_deg": 0.0, "roll_deg": 0.0, "gaze_x": 0.0, "gaze_y": 0.0, "eyes_open": True,
            "smile": 0.1, "brow_raise": 0.1, "lip_press": 0.0, "lip_pucker": 0.0, "jaw_open": 0.2, "blink": 0.0,
            "box": (0.3, 0.3, 0.3, 0.3)}
    # Eye contact for the first 3 s, then looking away; no face in the last second.
    frames = [(i / fps, 1, {**face, "eye_contact": i < 30}) if i < 50 else (i / fps, 0, None) for i in range(60)]
    series = AudioSeries(step_s=1.0, pause=[0, 0, 1, 0, 0, 0], speech_rate_wpm=[None, 120, 120, 120, None, None],
                         pitch_hz=[180, 190, None, 185, 182, None], loudness_db=[-20, -21, None, -19, -20, None])
    audio = AudioSignals(duration_s=duration, speech_s=4.0, speech_ratio=0.67, series=series)
    answer = build_answer({
        "answer_id": "iv-a1", "question_id": "q1", "questions": [{"question_id": "q1", "text": "Why us?"}],
        "media": {"duration_s": duration, "sample_fps": fps, "width": 640, "height": 360, "source_fps": 30.0,
                  "frame_count": len(frames), "audio_count": 6},
        "parts": {"audio": {"signals": audio.model_dump(), "warnings": []},
                  "nlp": {"signals": NlpSignals(word_count=20).model_dump()},
                  "transcript": {"segments": []}, "vision_end": {"count": len(frames)}},
        "frames": frames,
    }, framework, EvidenceRules.from_settings(PoiseSettings()))
    assert answer["series"]["step_s"] == 1.0
    assert answer["series"]["eye_contact"] == [1.0, 1.0, 1.0, 0.0, 0.0, None]
    assert answer["series"]["pitch_hz"] == series.pitch_hz and answer["series"]["pause"] == series.pause
    assert "series" not in answer["signals"]["audio"]  # measurements only; scores never see the series
    card = build_scorecard({"interview_id": "iv", "tenant": "acme", "role": "generic", "consent": None,
                            "questions": [{"question_id": "q1"}], "answers": [answer]}, framework)
    assert card["framework"]["bands"] == [{"name": b.name, "below": b.below} for b in framework.bands]
    for competency in card["competencies"]:
        if competency["score"] is not None:
            assert competency["band"] == framework.band(competency["score"])
