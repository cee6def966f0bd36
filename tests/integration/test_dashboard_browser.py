"""The reviewers' dashboard in a real browser: headless Debian Chromium signs in to `poise serve`,
watches an interview's score arrive live in the list, opens its scorecard, plays a quote's moment
of the answer's video, overrides a score and runs the bias audit. Screenshots of each page are
kept as test artefacts ($POISE_TEST_ARTIFACTS, else tests/integration/artifacts/dashboard/).

Chromium is the system package, started as tests/integration/browser.py says.
"""

from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import yaml

from browser import launch_chromium
from serve_process import serve

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"
QUESTION = yaml.safe_load((REPO / "examples" / "questions.yaml").read_text())["questions"][0]["text"]
# Silence before the answer starts, so its quotes begin well after 0 and a seek to them is visible.
LEAD_S = 3.0
OUT_FPS = 25
OUT_RATE = 48000
SCORING_TIMEOUT_MS = 600_000


def artefacts() -> Path:
    folder = Path(os.environ.get("POISE_TEST_ARTIFACTS") or REPO / "tests" / "integration" / "artifacts") / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def with_lead_in(source: Path, target: Path, lead_s: float = LEAD_S) -> Path:
    """``source`` re-encoded (H.264, AAC in MP4, index at the end so a player needs ranges) after
    ``lead_s`` of its first frame held in silence."""
    with av.open(str(source)) as given, av.open(str(target), "w") as out:
        vin, ain = given.streams.video[0], given.streams.audio[0]
        vout = out.add_stream("libx264", rate=OUT_FPS, options={"preset": "ultrafast", "crf": "30"})
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        aout = out.add_stream("aac", rate=OUT_RATE, layout="mono")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=OUT_RATE)
        lead_frames, lead_samples = round(lead_s * OUT_FPS), round(lead_s * OUT_RATE)
        next_pts, samples = 0, 0

        def video(frame: av.VideoFrame, pts: int) -> None:
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, OUT_FPS)
            out.mux(vout.encode(frame))

        def audio(chunk: np.ndarray) -> None:
            nonlocal samples
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1).astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = OUT_RATE, samples, Fraction(1, OUT_RATE)
            samples += chunk.size
            out.mux(aout.encode(frame))

        for start in range(0, lead_samples, 1024):
            audio(np.zeros(min(1024, lead_samples - start), dtype=np.float32))
        for packet in given.demux(vin, ain):
            for frame in packet.decode():
                if packet.stream is vin:
                    pts = lead_frames + round(frame.time * OUT_FPS)
                    while next_pts < lead_frames:  # the first frame, held through the lead-in
                        video(frame, next_pts)
                        next_pts += 1
                    if pts >= next_pts:
                        video(frame, pts)
                        next_pts = pts + 1
                else:
                    for chunk in resampler.resample(frame):
                        audio(chunk.to_ndarray().reshape(-1))
        out.mux(vout.encode(None))
        out.mux(aout.encode(None))
    return target


def wait_for(check, timeout_s: float, what: str):
    """Poll ``check()`` until it is truthy (the page's CSP refuses Playwright's own in-page polling,
    which evaluates strings); its last value otherwise fails the test."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {value}"
        time.sleep(0.2)
    return value


def clock(seconds: float) -> str:
    """As the page writes a time: m:ss."""
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def unlabelled_fields(page) -> list[str]:
    """Form fields a screen reader could not name."""
    return page.evaluate("""() => [...document.querySelectorAll("input, select, textarea")]
        .filter((el) => !el.hidden && el.type !== "hidden" && !el.labels.length && !el.getAttribute("aria-label"))
        .map((el) => el.id || el.outerHTML.slice(0, 80))""")


def test_a_reviewer_watches_a_score_arrive_opens_it_and_plays_a_quote_in_chromium(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = artefacts()
    video = with_lead_in(SAMPLE, tmp_path / "answer.mp4")
    with serve(tmp_path / "home") as served:
        key = served.key("acme", "admin")
        bearer = {"Authorization": f"Bearer {key}"}
        created = httpx.post(f"{served.base}/v1/interviews", headers=bearer, timeout=30, json={
            "role": "generic", "questions": [{"question_id": "q1", "text": QUESTION}]})
        assert created.status_code == 201, created.text
        interview_id = created.json()["interview_id"]
        uploaded = httpx.put(f"{served.base}/v1/interviews/{interview_id}/answers/q1", headers=bearer,
                             content=video.read_bytes(), timeout=120)
        assert uploaded.status_code == 200, uploaded.text

        problems: list[str] = []
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright, tmp_path)
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 768})  # a laptop screen
                page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
                page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))

                # Sign in; a wrong key is refused in words.
                page.goto(f"{served.base}/dashboard/")
                page.get_by_label("API key").fill("not-a-key")
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("alert")).to_contain_text("not valid")
                page.get_by_label("API key").fill(key)
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("heading", name="Interviews", level=1)).to_be_visible()
                expect(page.get_by_text("Live updates: on")).to_be_visible(timeout=30_000)
                expect(page.get_by_text("No interviews match.")).to_be_visible()
                assert unlabelled_fields(page) == []
                page.evaluate("window.stillTheSamePage = true")

                # Submitted now: the row appears and turns to scored while the page stays as it is.
                done = httpx.post(f"{served.base}/v1/interviews/{interview_id}/complete", headers=bearer, timeout=120)
                assert done.status_code == 202, done.text
                row = page.locator(f'tr[data-id="{interview_id}"]')
                expect(row).to_be_visible(timeout=SCORING_TIMEOUT_MS)
                expect(row.locator(".status")).to_have_text("Scored", timeout=SCORING_TIMEOUT_MS)
                assert page.evaluate("window.stillTheSamePage") is True
                page.screenshot(path=str(shots / "1-list-scored-live.png"), full_page=True)

                card = httpx.get(f"{served.base}/v1/interviews/{interview_id}/scorecard", headers=bearer, timeout=30)
                assert card.status_code == 200, card.text
                quotes = [e for c in card.json()["competencies"] for e in c["evidence"] if e["kind"] == "quote"]
                assert quotes, "the sample's answer echoes the question: expected a quote as evidence"
                quote = quotes[0]
                assert quote["start_s"] > 1.0, quote  # after the lead-in: a seek that shows

                # The scorecard: bars over bands, the model version and policy, the answer's plots.
                row.get_by_role("link").click()
                expect(page.get_by_role("heading", name="Competencies")).to_be_visible(timeout=30_000)
                facts = page.locator("dl.facts")
                expect(facts).to_contain_text(card.json()["model_version"])
                expect(facts).to_contain_text(card.json()["policy"])
                expect(page.locator("svg.bar")).to_have_count(len(card.json()["competencies"]))
                for series in ("eye_contact", "speech_rate_wpm", "pause", "pitch_hz", "loudness_db"):
                    expect(page.locator(f'figure[data-series="{series}"]')).to_be_visible()
                player = page.locator("video.player")
                wait_for(lambda: player.evaluate("v => v.readyState >= 1"), 60, "the video's metadata")
                assert unlabelled_fields(page) == []
                page.screenshot(path=str(shots / "2-scorecard.png"), full_page=True)
                # The answer's column scrolls under its video: show the plots beneath it.
                page.evaluate("""() => {
                    document.querySelector(".scorecard").scrollIntoView();
                    const panel = document.querySelector(".answers");
                    panel.scrollTop = document.getElementById("signals-heading").offsetTop
                        - document.querySelector("video.player").offsetHeight - 8; }""")
                page.screenshot(path=str(shots / "2b-signals-over-time.png"))

                # A quote plays the answer from its moment.
                button = page.locator("li.quote button.moment").first
                expect(button).to_contain_text(quote["text"][:30])
                button.click()
                at = wait_for(lambda: player.evaluate(
                    "(v, [from, to]) => !v.seeking && v.currentTime >= from && v.currentTime <= to && v.currentTime",
                    [quote["start_s"] - 0.3, quote["start_s"] + 4.0]), 30, "the video at the quote's time")
                assert at >= quote["start_s"] - 0.3
                assert player.evaluate("v => v === document.activeElement")  # the player has the focus
                page.screenshot(path=str(shots / "3-quote-playing.png"))

                # By keyboard: Enter on a behaviour episode elsewhere in the answer plays from there.
                episodes = [e for c in card.json()["competencies"] for e in c["evidence"]
                            if e["kind"] == "episode" and abs(e["start_s"] - at) > 3]
                assert episodes, "the sample's face shows behaviour episodes (smiles, looking away)"
                episode = episodes[0]
                moment = page.locator("li.episode button.moment", has_text=f"{clock(episode['start_s'])}–").first
                moment.press("Enter")
                wait_for(lambda: player.evaluate(
                    "(v, [from, to]) => !v.seeking && v.currentTime >= from && v.currentTime <= to",
                    [episode["start_s"] - 0.3, episode["start_s"] + 4.0]), 30, "the video at the episode's time")

                # A reviewer's override, with its reason, shown beside the model's score.
                scored = next(c for c in card.json()["competencies"] if c["score"] is not None)
                article = page.locator(f"#competency-{scored['name']}")
                article.get_by_text("Override this score").click()
                article.get_by_label("Your score (0–100)").fill("55")
                article.get_by_label("Reason").fill("The recording shows a clearer answer than measured.")
                article.get_by_role("button", name="Save the override").click()
                expect(article.locator(".override")).to_contain_text("55", timeout=30_000)
                history = httpx.get(f"{served.base}/v1/interviews/{interview_id}/overrides", headers=bearer, timeout=30)
                assert [(o["competency"], o["score"]) for o in history.json()["items"]] == [(scored["name"], 55.0)]

                # The bias audit, for admins.
                demographics = httpx.put(f"{served.base}/v1/interviews/{interview_id}/demographics", headers=bearer,
                                         json={"sex": "female", "race_ethnicity": "Asian"}, timeout=30)
                assert demographics.status_code == 200, demographics.text
                page.get_by_role("link", name="Bias audit").click()
                expect(page.get_by_role("heading", name="Bias audit", level=1)).to_be_visible()
                page.get_by_label("Role").select_option("generic")
                page.get_by_role("button", name="Run the audit").click()
                expect(page.get_by_role("heading", name="Report")).to_be_visible(timeout=30_000)
                expect(page.get_by_role("heading", name="By sex", exact=True)).to_be_visible()
                expect(page.get_by_role("heading", name="By race/ethnicity", exact=True)).to_be_visible()
                assert unlabelled_fields(page) == []
                page.screenshot(path=str(shots / "4-bias-audit.png"), full_page=True)
            finally:
                browser.close()
        # The browser reports the deliberately wrong key's 401 itself; nothing else may go wrong.
        assert [p for p in problems if "status of 401" not in p] == [] and len(problems) == 1, problems
