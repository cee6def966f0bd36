"""The candidate page in a real browser: headless Debian Chromium records an answer from a fake
camera and microphone fed with the sample interview, uploads it, submits, and `poise serve`
scores it.

Chromium is the system package, started as tests/integration/browser.py says.
"""

from __future__ import annotations

import time
import wave
from pathlib import Path

import av
import httpx

from browser import launch_chromium
from serve_process import serve

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"
FAKE_FPS = 12
FAKE_SECONDS = 10.0
RECORD_SECONDS = 6.0


def fake_capture(source: Path, folder: Path, seconds: float = FAKE_SECONDS) -> tuple[Path, Path]:
    """The first ``seconds`` of ``source`` as the files Chromium's fake devices play in a loop:
    Y4M video (4:2:0, FAKE_FPS) and 16-bit mono WAV at 48 kHz."""
    y4m, wav = folder / "camera.y4m", folder / "microphone.wav"
    with av.open(str(source)) as given, y4m.open("wb") as out:
        stream = given.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        out.write(f"YUV4MPEG2 W{width} H{height} F{FAKE_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        next_at = 0.0
        for frame in given.decode(stream):
            if frame.time >= seconds:
                break
            if frame.time + 1e-6 >= next_at:  # keep FAKE_FPS of the source's frames
                next_at += 1 / FAKE_FPS
                out.write(b"FRAME\n" + frame.reformat(format="yuv420p").to_ndarray().tobytes())
    samples = int(seconds * 48000)
    pcm = bytearray()
    with av.open(str(source)) as given:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in given.decode(given.streams.audio[0]):
            for chunk in resampler.resample(frame):
                pcm += chunk.to_ndarray().tobytes()
            if len(pcm) >= 2 * samples:
                break
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(bytes(pcm[: 2 * samples]))
    return y4m, wav


def fake_devices(y4m: Path, wav: Path) -> list[str]:
    return [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
    ]


def test_a_candidate_records_an_answer_in_chromium_and_the_interview_is_scored(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    y4m, wav = fake_capture(SAMPLE, tmp_path)
    with serve(tmp_path / "home") as served:
        bearer = {"Authorization": f"Bearer {served.key('acme', 'interviews:write,scores:read')}"}
        created = httpx.post(f"{served.base}/v1/interviews", headers=bearer, timeout=30, json={
            "role": "generic",
            "questions": [{"question_id": "q1", "text": "Tell us about a speech or talk that moved you."}],
        })
        assert created.status_code == 201, created.text
        interview_id = created.json()["interview_id"]
        invitation = httpx.post(f"{served.base}/v1/interviews/{interview_id}/invitation", headers=bearer, timeout=30)
        assert invitation.status_code == 200, invitation.text
        link = invitation.json()["url"]
        assert link.startswith(f"{served.base}/candidate/{interview_id}?t=")

        problems: list[str] = []
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright, tmp_path, fake_devices(y4m, wav))
            try:
                page = browser.new_page()
                page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
                page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
                page.goto(link)
                expect(page.get_by_role("heading", name="What is measured")).to_be_visible(timeout=30_000)
                expect(page.get_by_text("a person who reviews your interview")).to_be_visible()
                begin = page.get_by_role("button", name="Start the interview")
                expect(begin).to_be_disabled()
                page.get_by_label("I have read this notice and want to go on").check()
                begin.click()

                expect(page.get_by_text("Tell us about a speech or talk that moved you.")).to_be_visible()
                submit = page.get_by_role("button", name="Submit the interview")
                expect(submit).to_be_disabled()
                # A file the server refuses: the candidate reads the server's reason.
                page.get_by_label("Or choose a video file").set_input_files(
                    files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a video\n" * 2000}])
                expect(page.get_by_role("alert")).to_contain_text("Not a video file Poise can read", timeout=60_000)
                expect(submit).to_be_disabled()
                page.get_by_role("button", name="Record", exact=True).click()
                expect(page.get_by_role("button", name="Stop")).to_be_visible(timeout=30_000)
                page.wait_for_timeout(RECORD_SECONDS * 1000)
                page.get_by_role("button", name="Stop").click()
                expect(page.get_by_role("button", name="Record again")).to_be_visible(timeout=30_000)
                with page.expect_response(lambda r: "/answers/q1" in r.url, timeout=120_000) as uploaded:
                    page.get_by_role("button", name="Upload this recording").click()
                accepted = uploaded.value
                assert accepted.status == 200, accepted.text()
                facts = accepted.json()
                expect(page.get_by_text("Your answer to this question was received")).to_be_visible(timeout=30_000)
                expect(submit).to_be_enabled()
                submit.click()
                expect(page.get_by_role("heading", name="Thank you")).to_be_visible(timeout=120_000)
            finally:
                browser.close()

        assert facts["container"].startswith("matroska")  # MediaRecorder's WebM, as the browser wrote it
        assert facts["codecs"]["video"] in {"vp8", "vp9"} and facts["codecs"]["audio"] == "opus"
        assert RECORD_SECONDS - 1.5 < facts["duration_s"] < RECORD_SECONDS + 3
        # The browser reports the refused upload's 422 itself; nothing else may go wrong.
        assert [p for p in problems if "status of 422" not in p] == [], problems

        deadline = time.monotonic() + 600
        while True:
            card = httpx.get(f"{served.base}/v1/interviews/{interview_id}/scorecard", headers=bearer, timeout=30)
            if card.status_code != 202 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert card.status_code == 200, card.text
        scored = [c for c in card.json()["competencies"] if isinstance(c.get("score"), (int, float))]
        assert scored, card.json()["competencies"]
        assert card.json()["answers"][0]["transcript"], "the recorded voice was not transcribed"
