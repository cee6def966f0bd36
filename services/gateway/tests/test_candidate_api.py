"""The candidate's invitation link and page API, through a real gateway app on real media."""

from __future__ import annotations

import asyncio
import base64
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import av
import httpx
import pytest
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.messages import AnswerMediaDone, Envelope, InterviewOpened, Topics
from poise_common.settings import PoiseSettings
from poise_gateway.api import UploadDesk, create_router
from poise_gateway.candidate import InvalidInvitation, InvitationSigner, create_candidate_router, kept_secret
from poise_gateway.service import Gateway

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "examples" / "sample_interview.mp4"
QUESTIONS = [
    {"question_id": "q1", "text": "Tell us about a time you worked with others to reach a difficult goal."},
    {"question_id": "q2", "text": "Describe a mistake you made and what you did next."},
]
SECRET = b"k" * 32


# -- the token ----------------------------------------------------------------------------------
def test_a_token_opens_its_own_interview_for_its_tenant_until_it_expires():
    signer = InvitationSigner(SECRET, valid_s=3600)
    token = signer.token("a" * 32, "acme", now=1_000_000)
    assert signer.tenant_of("a" * 32, token, now=1_000_000 + 3599) == "acme"
    with pytest.raises(InvalidInvitation) as expired:
        signer.tenant_of("a" * 32, token, now=1_000_000 + 3600)
    assert expired.value.code == "link_expired"
    # Another interview, another server secret: not valid (never "expired").
    for interview_id, other in (("b" * 32, signer), ("a" * 32, InvitationSigner(b"z" * 32, valid_s=3600))):
        with pytest.raises(InvalidInvitation) as refused:
            other.tenant_of(interview_id, token, now=1_000_000)
        assert refused.value.code == "link_invalid"


def test_a_tampered_token_is_refused_whichever_part_changed():
    signer = InvitationSigner(SECRET, valid_s=3600)
    expires, tenant, signature = signer.token("a" * 32, "acme", now=1_000_000).split(".")
    other_tenant = base64.urlsafe_b64encode(b"globex").rstrip(b"=").decode()
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    tampered = [
        f"{int(expires) + 86400}.{tenant}.{signature}",  # a longer life
        f"{expires}.{other_tenant}.{signature}",  # another tenant
        f"{expires}.{tenant}.{flipped}",
        f"{expires}.{tenant}",
        "",
        "not a token",
        f"{expires}.%%%.{signature}",
        f"{expires}.{tenant}.{signature[:-1]}é",  # not ASCII: refused like any other, not a server error
    ]
    for token in tampered:
        with pytest.raises(InvalidInvitation) as refused:
            signer.tenant_of("a" * 32, token, now=1_000_000)
        assert refused.value.code == "link_invalid", token


def test_a_token_carries_only_expiry_tenant_and_signature():
    signer = InvitationSigner(SECRET, valid_s=14 * 86400)
    link = signer.link("https://poise.example.com/", "c" * 32, "acme")
    parsed = urlparse(link)
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("https", "poise.example.com", f"/candidate/{'c' * 32}")
    (token,) = parse_qs(parsed.query)["t"]
    expires, tenant, _ = token.split(".")
    assert base64.urlsafe_b64decode(tenant + "==").decode() == "acme"
    assert int(expires) > 0


def test_the_secret_is_generated_once_private_and_shared_by_every_process_of_the_home(tmp_path):
    home = tmp_path / "home"
    first = kept_secret(home)
    assert len(first) >= 32 and kept_secret(home) == first
    assert stat.S_IMODE((home / "invitation.secret").stat().st_mode) == 0o600
    token = InvitationSigner.from_settings(PoiseSettings(home=home)).token("d" * 32, "acme")
    assert InvitationSigner.from_settings(PoiseSettings(home=home)).tenant_of("d" * 32, token) == "acme"
    # A configured secret wins over the kept one (a distributed deployment sets it everywhere).
    configured = InvitationSigner.from_settings(PoiseSettings(home=home, invitation_secret="s" * 40))
    with pytest.raises(InvalidInvitation):
        configured.tenant_of("d" * 32, token)


# -- the routes -----------------------------------------------------------------------------------
@dataclass
class Harness:
    client: httpx.AsyncClient
    bus: MemoryBus
    desk: UploadDesk
    signer: InvitationSigner
    keys: KeyStore

    async def create(self, questions=QUESTIONS) -> str:
        response = await self.client.post("/v1/interviews", json={"questions": questions, "role": "generic"})
        assert response.status_code == 201, response.text
        return response.json()["interview_id"]

    def files(self, interview_id: str) -> list[str]:
        return sorted(p.name for p in (self.desk.root / interview_id).iterdir())


@asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = PoiseSettings(home=tmp_path / "home")
    bus = MemoryBus()
    await bus.start()
    desk = UploadDesk(settings.media_dir, Gateway(bus, settings.gateway), settings.gateway, default_role="generic")
    desk.prepare()
    engine = create_db_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    upgrade(engine)
    keys = KeyStore(session_factory(engine))
    signer = InvitationSigner(SECRET, valid_s=3600)
    app = FastAPI()
    app.include_router(create_router(desk, settings, keys))
    app.include_router(create_candidate_router(desk, signer, keys, "http://gateway"))
    headers = {"Authorization": f"Bearer {keys.create('acme', ['interviews:write'])}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     timeout=120, headers=headers) as client:
            yield Harness(client, bus, desk, signer, keys)
    finally:
        await bus.stop()
        engine.dispose()


def candidate_path(link: str) -> str:
    """The link as the candidate's browser requests it (path and query), with no API key."""
    parsed = urlparse(link)
    return f"{parsed.path}?{parsed.query}"


def api(link: str, suffix: str = "") -> str:
    parsed = urlparse(link)
    interview_id = parsed.path.rsplit("/", 1)[1]
    return f"/candidate/api/{interview_id}{suffix}?{parsed.query}"


def live_webm(source: Path, target: Path, seconds: float = 4.0) -> Path:
    """VP8 + Opus WebM written to a stream that cannot seek, as a browser's MediaRecorder writes
    it: the header never gets its duration."""

    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, chunk: bytes) -> int:
            self.data += chunk
            return len(chunk)

    sink = Sink()
    with av.open(str(source)) as given, av.open(sink, "w", format="webm") as out:
        video = out.add_stream("libvpx", rate=24)
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        audio = out.add_stream("libopus", rate=48000)
        audio.layout = "mono"
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in given.decode(given.streams.video[0], given.streams.audio[0]):
            if frame.time is None or frame.time > seconds:
                continue
            if isinstance(frame, av.VideoFrame):
                small = frame.reformat(width=320, height=180, format="yuv420p")
                small.pts = None
                out.mux(video.encode(small))
            else:
                for chunk in resampler.resample(frame):
                    chunk.pts = None
                    out.mux(audio.encode(chunk))
        out.mux(video.encode())
        out.mux(audio.encode())
    target.write_bytes(bytes(sink.data))
    return target


def test_a_candidate_answers_every_question_and_submits_with_only_the_link(tmp_path):
    webm = live_webm(SAMPLE, tmp_path / "recording.webm")
    with av.open(str(webm)) as container:
        assert container.duration is None  # as a browser writes it: no duration in the header

    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            invitation = await h.client.post(f"/v1/interviews/{interview_id}/invitation")
            link = invitation.json()["url"]
            h.client.headers.pop("Authorization")  # the candidate has no API key
            page = await h.client.get(candidate_path(link))
            before = await h.client.get(api(link))
            early = await h.client.post(api(link, "/complete"))
            first = await h.client.put(api(link, "/answers/q1"), content=SAMPLE.read_bytes())
            second = await h.client.put(api(link, "/answers/q2"), content=webm.read_bytes(),
                                        headers={"content-type": "video/webm;codecs=vp8,opus"})
            answered = await h.client.get(api(link))
            done = await h.client.post(api(link, "/complete"))
            after = await h.client.get(api(link))
            late = await h.client.put(api(link, "/answers/q1"), content=SAMPLE.read_bytes())
            control = [Envelope.from_bytes(r) for r in await h.bus.read_all(Topics.MEDIA_CONTROL)]
            return interview_id, invitation, page, before, early, first, second, answered, done, after, late, control

    interview_id, invitation, page, before, early, first, second, answered, done, after, late, control = (
        asyncio.run(scenario())
    )
    assert invitation.status_code == 200
    assert invitation.json()["url"].startswith(f"http://gateway/candidate/{interview_id}?t=")
    assert 3500 < invitation.json()["expires_at"] - time.time() <= 3600
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "What is measured" in page.text and 'src="static/candidate.js"' in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]

    assert before.status_code == 200
    body = before.json()
    assert body["status"] == "open" and body["role"] == "generic"
    assert [(q["question_id"], q["text"], q["answered"]) for q in body["questions"]] == [
        (q["question_id"], q["text"], False) for q in QUESTIONS
    ]
    assert body["max_duration_s"] == 1200 and body["max_file_bytes"] == 2 * 1024**3
    assert early.status_code == 409 and early.json()["error"]["missing"] == ["q1", "q2"]

    assert first.status_code == 200, first.text
    assert first.json()["codecs"]["video"] == "h264" and 19 < first.json()["duration_s"] < 20.5
    assert second.status_code == 200, second.text
    assert second.json()["codecs"] == {"video": "vp8", "audio": "opus"}
    assert 3.5 < second.json()["duration_s"] < 4.6  # read from the packets, the header had none
    assert [q["answered"] for q in answered.json()["questions"]] == [True, True]

    assert done.status_code == 202 and done.json() == {"interview_id": interview_id, "status": "processing"}
    assert after.json()["status"] == "completed"
    assert late.status_code == 409 and late.json()["error"]["code"] == "completed"
    opened, *announced = control
    assert isinstance(opened.payload, InterviewOpened) and opened.tenant == "acme"
    assert [e.payload.question_id for e in announced if isinstance(e.payload, AnswerMediaDone)] == ["q1", "q2"]


def test_a_bad_link_is_refused_alike_whether_or_not_the_interview_exists(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            other_id = await h.create()
            missing_id = "f" * 32
            good = h.signer.link("http://gateway", interview_id, "acme")
            token = parse_qs(urlparse(good).query)["t"][0]
            expired = InvitationSigner(SECRET, valid_s=-1).token(interview_id, "acme")
            h.client.headers.pop("Authorization")
            calls = {
                "wrong token, real interview": await h.client.get(f"/candidate/api/{interview_id}?t=x.y.z"),
                "wrong token, no interview": await h.client.get(f"/candidate/api/{missing_id}?t=x.y.z"),
                "no token": await h.client.get(f"/candidate/api/{interview_id}"),
                "another interview's token": await h.client.get(f"/candidate/api/{other_id}?t={token}"),
                "upload with another's token": await h.client.put(
                    f"/candidate/api/{other_id}/answers/q1?t={token}", content=SAMPLE.read_bytes()),
                "complete with another's token": await h.client.post(f"/candidate/api/{other_id}/complete?t={token}"),
            }
            expired_call = await h.client.get(f"/candidate/api/{interview_id}?t={expired}")
            pages = [await h.client.get(f"/candidate/{i}?t=x.y.z") for i in (interview_id, missing_id)]
            expired_page = await h.client.get(f"/candidate/{interview_id}?t={expired}")
            return calls, expired_call, pages, expired_page, h.files(other_id)

    calls, expired_call, pages, expired_page, other_files = asyncio.run(scenario())
    for name, response in calls.items():
        assert response.status_code == 403, name
        assert response.json() == calls["wrong token, real interview"].json(), name
    assert calls["no token"].json()["error"]["code"] == "link_invalid"
    assert expired_call.status_code == 403 and expired_call.json()["error"]["code"] == "link_expired"
    assert "expired" in expired_call.json()["error"]["message"]
    assert other_files == ["manifest.json"]  # the refused upload wrote nothing
    assert [p.status_code for p in pages] == [403, 403] and pages[0].text == pages[1].text
    assert "does not work" in pages[0].text and pages[0].headers["content-type"].startswith("text/html")
    assert expired_page.status_code == 403


def test_only_the_interviews_tenant_gets_a_link_for_it(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            other = {"Authorization": f"Bearer {h.keys.create('globex', ['interviews:write'])}"}
            reader = {"Authorization": f"Bearer {h.keys.create('acme', ['scores:read'])}"}
            return [
                await h.client.post(f"/v1/interviews/{interview_id}/invitation", headers=other),
                await h.client.post(f"/v1/interviews/{'f' * 32}/invitation"),
                await h.client.post(f"/v1/interviews/{interview_id}/invitation", headers=reader),
                await h.client.post(f"/v1/interviews/{interview_id}/invitation", headers={"Authorization": ""}),
            ]

    other_tenant, missing, reader, anonymous = asyncio.run(scenario())
    assert other_tenant.status_code == 404 and missing.status_code == 404
    assert other_tenant.json() == missing.json()
    assert reader.status_code == 403 and anonymous.status_code == 401


def test_a_refused_answer_gives_the_candidate_the_servers_reason(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            link = h.signer.link("http://gateway", interview_id, "acme")
            h.client.headers.pop("Authorization")
            noise = await h.client.put(api(link, "/answers/q1"), content=b"\x00not a video" * 5000)
            unknown = await h.client.put(api(link, "/answers/q9"), content=SAMPLE.read_bytes())
            return noise, unknown, h.files(interview_id)

    noise, unknown, files = asyncio.run(scenario())
    assert noise.status_code == 422 and noise.json()["error"]["code"] in {"unreadable", "corrupt", "not_video"}
    assert noise.json()["error"]["message"]
    assert unknown.status_code == 404
    assert files == ["manifest.json"]


def test_the_page_script_and_style_are_served_locally(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            return [await h.client.get(f"/candidate/static/{name}")
                    for name in ("candidate.js", "candidate.css", "candidate.html", "..%2Fcandidate.py")]

    script, style, html, escape = asyncio.run(scenario())
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "MediaRecorder" in script.text and "http" not in script.text.replace("XMLHttpRequest", "")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert "url(" not in style.text  # nothing fetched from elsewhere
    assert html.status_code == 404 and escape.status_code == 404
