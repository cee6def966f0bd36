"""Policy profiles: eu scores rest on what was said; us-nyc carries the notice; us-il needs consent;
the tenant settings store, its cache, and the admin REST route."""

from __future__ import annotations

import asyncio
import random
import typing

import httpx
import pytest
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.messages import (
    AnswerMediaDone, AudioFeatures, Consent, Envelope, InterviewOpened, NlpFeatures, Question, Topics, Transcript,
    VisionEnd,
)
from poise_common.settings import FusionSettings, PoiseSettings
from poise_common.signals import AudioSignals, NlpSignals, VisionSignals
from poise_fusion.assemble import EvidenceRules, build_answer, build_scorecard
from poise_fusion.framework import available_frameworks, load_framework_file
from poise_fusion.policy import PROFILE_NAMES, PolicyError, TenantPolicyStore
from poise_fusion.policy_api import create_tenant_settings_router
from poise_fusion.scoring import AnswerInputs, roll_up, score_answer
from poise_fusion.service import FusionService
from poise_fusion.store import FusionStore

FRAMEWORKS = sorted(available_frameworks())
FACE_VOICE_EPISODES = ("smile", "brow_raise", "lip_press", "gaze_away", "blink", "long_pause")
# Words that would name a face or voice measurement as an emotion or a personality trait.
EMOTION_WORDS = (
    "warm", "nervous", "confiden", "happy", "sad", "angry", "anger", "anxi", "calm", "friendly", "energetic",
    "enthusias", "excite", "emotion", "stress", "fear", "joy", "mood", "feeling", "expressive", "steady",
    "assertive", "empath", "honest", "trust", "engag", "passion",
)
NOTICE = {
    "alternative_process_contact": "accommodations@example.com",
    "retention": "recordings 30 days, scorecards 1 year",
    "audit_summary_url": "https://example.com/bias-audit-2025",
}


def numeric_fields(model: type) -> list[str]:
    return [name for name, info in model.model_fields.items() if info.annotation in (float, int, float | None)]


def random_group(rng: random.Random, model: type) -> dict:
    # Ratios, rates and counts on scales that cross the bundled norms' ranges.
    return {name: rng.choice([rng.uniform(0, 1), rng.uniform(0, 10), rng.uniform(0, 250)])
            for name in numeric_fields(model)}


def random_episodes(rng: random.Random, duration: float = 60.0) -> list[dict]:
    episodes = []
    for _ in range(rng.randint(2, 8)):
        start = rng.uniform(0, duration - 3)
        episodes.append({"behaviour": rng.choice(FACE_VOICE_EPISODES), "start_s": start,
                         "end_s": start + rng.uniform(0.3, 3), "peak": rng.uniform(0.5, 1)})
    return sorted(episodes, key=lambda e: e["start_s"])


def answer_inputs(rng: random.Random, nlp: dict, quotes: list[dict]) -> AnswerInputs:
    """One answer whose face and voice are drawn from ``rng``; what was said is fixed."""
    return AnswerInputs(
        answer_id="a1", question_id="q1", duration_s=60.0,
        signals={"vision": random_group(rng, VisionSignals), "audio": random_group(rng, AudioSignals), "nlp": nlp},
        quotes=quotes, episodes=random_episodes(rng), has_speech=True, has_face=rng.random() < 0.5,
    )


def scores(competencies: list[dict]) -> dict:
    return {c["name"]: (c["score"], c["status"], c["reason"]) for c in competencies}


def face_or_voice(item: dict) -> bool:
    names = [item.get("feature") or "", item.get("signal") or ""]
    return (item.get("modality") in ("face", "voice") or item.get("kind") == "episode"
            or any(n.startswith(("vision.", "audio.")) for n in names))


def face_voice_texts(card: dict) -> list[str]:
    """Every text that names a face or voice measurement: its competency, behaviour, signal names."""
    texts: list[str] = []
    competencies = list(card["competencies"]) + [c for a in card["answers"] for c in a["competencies"]]
    for competency in competencies:
        for item in competency["contributions"] + competency["evidence"]:
            if face_or_voice(item):
                texts += [competency["name"], competency["label"], item.get("behaviour") or "",
                          item.get("feature") or "", item.get("signal") or ""]
    for answer in card["answers"]:
        texts += list(answer["signals"]["vision"]) + list(answer["signals"]["audio"])
        texts += [e["behaviour"] for e in answer["episodes"]]
        texts += [w for w in answer["warnings"] if "face" in w or "voice" in w or "speech" in w]
    return texts


def emotion_words_in(texts: list[str]) -> list[str]:
    return sorted({t for t in texts for w in EMOTION_WORDS if w in t.lower()})


# -- eu on the scoring functions ---------------------------------------------------------
@pytest.mark.parametrize("role", FRAMEWORKS)
@pytest.mark.parametrize("seed", range(6))
def test_eu_scores_ignore_every_face_and_voice_value(role, seed):
    framework = available_frameworks()[role]
    rng = random.Random(seed)
    nlp = random_group(rng, NlpSignals)
    quotes = [{"feature": f, "text": "we tried it", "start_s": 1.0, "end_s": 2.0}
              for f in ("hedges", "fillers", "we", "perspective_taking", "question_reference", "star_result")]
    first, second = answer_inputs(rng, nlp, quotes), answer_inputs(rng, nlp, quotes)
    assert first.signals["vision"] != second.signals["vision"] and first.episodes != second.episodes

    eu = [score_answer(framework, inputs, policy="eu") for inputs in (first, second)]
    assert scores(eu[0]) == scores(eu[1])
    assert eu[0] == eu[1]  # contributions and evidence too: nothing of them comes from face or voice
    assert any(c["status"] == "scored" for c in eu[0])
    for competency in eu[0] + roll_up(framework, eu):
        assert not [i for i in competency["contributions"] + competency["evidence"] if face_or_voice(i)]

    # The same change moves the default profile's scores: the check above could fail.
    default = [score_answer(framework, inputs, policy="default") for inputs in (first, second)]
    assert scores(default[0]) != scores(default[1])


def test_a_competency_of_only_face_and_voice_is_insufficient_and_episodes_are_no_evidence(tmp_path):
    path = tmp_path / "camera.yaml"
    path.write_text(
        "name: camera\nversion: '1'\nbands: [{name: any, below: 101}]\ncompetencies:\n"
        "  - name: presence\n    label: On-camera presence\n    requires: [face]\n    behaviours:\n"
        "      - name: looks at the camera\n        features:\n"
        "          - {feature: vision.eye_contact_ratio, weight: 1, direction: higher, norm: {low: 0.3, high: 0.9}}\n"
        "          - {feature: audio.pitch_variation_st, weight: 1, direction: higher, norm: {low: 1, high: 4}}\n"
        "  - name: wording\n    label: Wording\n    requires: [face]\n    behaviours:\n"
        "      - name: few hedges\n        features:\n"
        "          - {feature: nlp.hedge_rate, weight: 1, direction: lower, norm: {low: 0.5, high: 6}, "
        "evidence: [quotes:hedges, episodes:smile]}\n"
    )
    framework = load_framework_file(path)
    inputs = AnswerInputs(answer_id="a1", question_id="q1", duration_s=30.0, has_face=False, signals={
        "vision": {"eye_contact_ratio": 0.8}, "audio": {"pitch_variation_st": 3.0}, "nlp": {"hedge_rate": 1.0}})
    inputs.quotes = [{"feature": "hedges", "text": "I guess", "start_s": 2.0, "end_s": 2.4}]
    inputs.episodes = [{"behaviour": "smile", "start_s": 5.0, "end_s": 6.0, "peak": 0.9}]
    presence, wording = score_answer(framework, inputs, policy="eu")
    assert presence["status"] == "insufficient_evidence" and presence["score"] is None
    assert "eu policy" in presence["reason"] and "face and voice" in presence["reason"]
    assert roll_up(framework, [[presence, wording]])[0]["reason"] == presence["reason"]
    # Under eu the face's absence does not decide a score the face cannot feed, and a smile is
    # no evidence of a competency even where the framework names it.
    assert wording["status"] == "scored"
    assert {e["kind"] for e in wording["evidence"]} == {"quote", "signal"}
    default_presence, default_wording = score_answer(framework, inputs, policy="default")
    assert default_presence["reason"] == default_wording["reason"] == "no face in the answer"
    inputs.has_face = True
    assert "episode" in {e["kind"] for e in score_answer(framework, inputs, policy="default")[1]["evidence"]}


# -- eu on build_answer / build_scorecard ------------------------------------------------
def face(rng: random.Random, smiling: float, looking: float) -> dict:
    return {
        "yaw_deg": rng.gauss(0, 4 if looking > 0.5 else 25), "pitch_deg": rng.gauss(0, 5), "roll_deg": rng.gauss(0, 3),
        "gaze_x": rng.uniform(-0.2, 0.2), "gaze_y": rng.uniform(-0.2, 0.2), "eyes_open": True,
        "eye_contact": rng.random() < looking, "smile": min(1.0, max(0.0, rng.gauss(smiling, 0.15))),
        "brow_raise": rng.uniform(0, 0.7), "lip_press": rng.uniform(0, 0.4), "lip_pucker": rng.uniform(0, 0.2),
        "jaw_open": rng.uniform(0, 0.5), "blink": rng.choice([0.0, 0.0, 0.0, 0.8]), "box": (0.3, 0.2, 0.3, 0.4),
    }


def bundle(answer_id: str, question_id: str, seed: int, smiling: float, looking: float, voice: dict) -> dict:
    """One answer as the store hands it to build_answer: the same words, the face and voice given."""
    rng = random.Random(seed)
    duration, fps = 40.0, 10.0
    frames = [(i / fps, 1, face(rng, smiling, looking)) for i in range(int(duration * fps))]
    pause = {"behaviour": "long_pause", "start_s": 10.0, "end_s": 10.0 + 2 * voice["mean_pause_s"]}
    audio = AudioSignals(duration_s=duration, speech_s=duration * voice["speech_ratio"], **voice, episodes=[pause])
    nlp = NlpSignals(
        word_count=96, filler_count=3, filler_rate=3.1, hedge_rate=2.0, i_count=6, we_count=4, we_ratio=0.4,
        lexical_diversity=0.7, sentence_count=6, mean_sentence_words=16.0, star_coverage=0.75,
        star_parts=["situation", "action", "result"], relevance=0.2, question_reference_rate=2.1,
        perspective_taking_rate=1.0, sentiment=0.4,
        quotes=[{"feature": "hedges", "text": "I think", "start_s": 3.0, "end_s": 3.5},
                {"feature": "we", "text": "we shipped it", "start_s": 9.0, "end_s": 10.0}],
    )
    return {
        "answer_id": answer_id, "question_id": question_id,
        "questions": [{"question_id": "q1", "text": "Tell me about a project."},
                      {"question_id": "q2", "text": "How do you handle a disagreement?"}],
        "media": {"duration_s": duration, "sample_fps": fps, "width": 640, "height": 360, "source_fps": 30.0,
                  "frame_count": len(frames), "audio_count": 40},
        "parts": {"audio": {"signals": audio.model_dump(), "warnings": []}, "nlp": {"signals": nlp.model_dump()},
                  "transcript": {"segments": [{"start_s": 0.0, "end_s": 40.0, "text": "we shipped it", "words": []}]},
                  "vision_end": {"count": len(frames)}},
        "frames": frames,
    }


CALM = {"speech_ratio": 0.8, "pause_ratio": 0.15, "pause_count": 4, "mean_pause_s": 0.5, "long_pause_count": 1,
        "speech_rate_wpm": 150.0, "pitch_mean_hz": 180.0, "pitch_variation_st": 3.5, "loudness_db": -20.0,
        "loudness_variation_db": 8.0, "first_speech_onset_s": 0.4}
HALTING = {"speech_ratio": 0.55, "pause_ratio": 0.45, "pause_count": 11, "mean_pause_s": 1.8, "long_pause_count": 5,
           "speech_rate_wpm": 95.0, "pitch_mean_hz": 120.0, "pitch_variation_st": 1.1, "loudness_db": -31.0,
           "loudness_variation_db": 3.5, "first_speech_onset_s": 2.0}


def scorecard(role: str, policy: str, smiling: float, looking: float, voice: dict) -> dict:
    framework = available_frameworks()[role]
    answers = [build_answer(bundle(f"iv-a{n}", f"q{n}", n, smiling, looking, voice), framework,
                            EvidenceRules.from_settings(PoiseSettings()), policy)
               for n in (1, 2)]
    return build_scorecard({"interview_id": "iv", "tenant": "acme", "role": role, "consent": None,
                            "questions": [{"question_id": "q1"}, {"question_id": "q2"}], "answers": answers},
                           framework, policy)


@pytest.mark.parametrize("role", FRAMEWORKS)
def test_eu_scorecard_ignores_face_and_voice_and_names_no_emotion(role):
    eu_a = scorecard(role, "eu", smiling=0.8, looking=0.9, voice=CALM)
    eu_b = scorecard(role, "eu", smiling=0.05, looking=0.2, voice=HALTING)
    assert eu_a["answers"][0]["signals"]["vision"] != eu_b["answers"][0]["signals"]["vision"]
    assert eu_a["answers"][0]["signals"]["audio"] != eu_b["answers"][0]["signals"]["audio"]
    assert eu_a["policy"] == "eu" and eu_a["notice"] is None
    assert scores(eu_a["competencies"]) == scores(eu_b["competencies"])
    assert eu_a["competencies"] == eu_b["competencies"]
    for a, b in zip(eu_a["answers"], eu_b["answers"]):
        assert a["competencies"] == b["competencies"] and a["policy"] == "eu"
    assert any(c["status"] == "scored" for c in eu_a["competencies"])
    assert emotion_words_in(face_voice_texts(eu_a)) == []
    assert emotion_words_in(face_voice_texts(eu_b)) == []
    # The measurements stay in the answers as behaviour.
    assert eu_a["answers"][0]["signals"]["vision"]["smile_ratio"] > 0.5

    default_a = scorecard(role, "default", smiling=0.8, looking=0.9, voice=CALM)
    default_b = scorecard(role, "default", smiling=0.05, looking=0.2, voice=HALTING)
    assert scores(default_a["competencies"]) != scores(default_b["competencies"])
    # Under default the bundled frameworks do attach such words to face and voice: the check can fail.
    assert emotion_words_in(face_voice_texts(default_a))


def test_profiles_match_the_setting_choices():
    assert typing.get_args(FusionSettings.model_fields["default_policy"].annotation) == PROFILE_NAMES


# -- the tenant settings store -----------------------------------------------------------
def test_store_round_trip_validation_and_default(sessions):
    store = TenantPolicyStore(sessions, default_policy="eu", ttl_s=0)
    fresh = store.get("acme")
    assert (fresh.name, fresh.stored, fresh.notice) == ("eu", False, None)
    with pytest.raises(PolicyError, match="alternative_process_contact, retention, audit_summary_url"):
        store.set("acme", "us-nyc")
    with pytest.raises(PolicyError, match="audit_summary_url"):
        store.set("acme", "us-nyc", {**NOTICE, "audit_summary_url": "ftp://example.com/x"})
    with pytest.raises(PolicyError, match="retension"):
        store.set("acme", "us-nyc", {**NOTICE, "retension": "typo"})
    with pytest.raises(PolicyError, match="unknown policy 'uk'"):
        store.set("acme", "uk")
    with pytest.raises(PolicyError, match="tenant name"):
        store.set("a/b", "eu")
    assert store.get("acme").stored is False  # nothing refused was written

    store.set("acme", "us-nyc", NOTICE)
    assert store.set("acme", "default").notice == NOTICE  # the notice stays unless replaced
    back = store.set("acme", "us-nyc")
    assert (back.name, back.notice) == ("us-nyc", NOTICE)
    assert store.set("acme", "eu", None).notice is None
    assert store.get("other").name == "eu"


def test_a_change_reaches_another_process_after_the_cache_expires(sessions):
    now = [1000.0]
    reader = TenantPolicyStore(sessions, ttl_s=5.0, clock=lambda: now[0])
    writer = TenantPolicyStore(sessions, ttl_s=5.0, clock=lambda: now[0])
    assert reader.get("acme").name == "default"
    writer.set("acme", "eu")
    assert writer.get("acme").name == "eu"  # its own change at once
    assert reader.get("acme").name == "default"  # cached
    now[0] += 5.1
    assert reader.get("acme").name == "eu"
    assert reader.resolve("acme", "us-il").name == "us-il"


# -- fusion enforcing the tenant's policy ------------------------------------------------
def messages(tenant: str, consent: Consent | None, questions: int = 1) -> list[Envelope]:
    def env(answer_id: str, stream: str, seq: int, payload) -> Envelope:
        return Envelope(interview_id="iv", answer_id=answer_id, tenant=tenant, stream=stream, seq=seq,
                        payload=payload)

    opened = Envelope(interview_id="iv", tenant=tenant, stream="control", seq=0, payload=InterviewOpened(
        role="generic", questions=[Question(question_id=f"q{n + 1}", text="Why?") for n in range(questions)],
        consent=consent))
    out = [opened]
    for n in range(questions):
        answer_id = f"iv-a{n + 1}"
        out += [
            env(answer_id, "control", n + 1, AnswerMediaDone(
                question_id=f"q{n + 1}", duration_s=2.0, frame_count=0, audio_count=2, has_video=True,
                sample_fps=10.0)),
            env(answer_id, "vision", 0, VisionEnd(count=0)),
            env(answer_id, "transcript", 0, Transcript(duration_s=2.0, segments=[])),
            env(answer_id, "audio", 0, AudioFeatures(signals=AudioSignals(duration_s=2.0, speech_s=0.0,
                                                                          speech_ratio=0.0))),
            env(answer_id, "nlp", 0, NlpFeatures(signals=NlpSignals(word_count=0))),
        ]
    return out


def run_fusion(sessions, policies: TenantPolicyStore, envelopes: list[Envelope], between=None) -> list[Envelope]:
    """Feed ``envelopes`` to a FusionService and return what it published; ``between(index)`` runs before each."""
    async def scenario():
        bus = MemoryBus()
        await bus.start()
        service = FusionService(bus, FusionStore(sessions), PoiseSettings(), policies)
        for index, env in enumerate(envelopes):
            if between:
                between(index)
            await service.handle(env)
        published = [Envelope.from_bytes(record) for record in await bus.read_all(Topics.SCORECARDS)]
        await bus.stop()
        return published

    return asyncio.run(scenario())


def finished(events: list[Envelope]) -> Envelope:
    (event,) = [e for e in events if e.payload.type.startswith("interview.")]
    return event


def test_us_il_without_consent_fails_the_interview(sessions):
    policies = TenantPolicyStore(sessions, ttl_s=0)
    policies.set("acme", "us-il")
    events = run_fusion(sessions, policies, messages("acme", consent=None))
    event = finished(events)
    assert event.payload.type == "interview.failed"
    assert "consent" in event.payload.error and "us-il" in event.payload.error
    assert not [e for e in events if e.payload.type == "answer.scored"]  # nothing analysed into scores
    assert FusionStore(sessions).interview_status("iv") == ("acme", "failed")


def test_us_il_with_consent_scores_and_the_scorecard_shows_it(sessions):
    policies = TenantPolicyStore(sessions, ttl_s=0)
    policies.set("acme", "us-il")
    consent = Consent(given_at="2025-03-01T09:30:00+00:00", notice_version="il-2025-01")
    event = finished(run_fusion(sessions, policies, messages("acme", consent)))
    assert event.payload.type == "interview.scored"
    card = event.payload.scorecard
    assert card["policy"] == "us-il"
    assert card["consent"] == {"given_at": 1740821400.0, "notice_version": "il-2025-01"}


def test_us_nyc_scorecard_carries_the_notice(sessions):
    policies = TenantPolicyStore(sessions, ttl_s=0)
    policies.set("acme", "us-nyc", {**NOTICE, "notice_version": "nyc-3"})
    card = finished(run_fusion(sessions, policies, messages("acme", None))).payload.scorecard
    notice = card["notice"]
    assert card["policy"] == "us-nyc"
    generic = available_frameworks()["generic"]
    assert notice["assessed"] == [{"name": c.name, "label": c.label} for c in generic.competencies]
    assert [kind.split(":")[0] for kind in notice["data_used"]] == [
        "what was said", "how it was said", "facial behaviour on camera"]
    assert {k: notice[k] for k in NOTICE} == NOTICE
    assert notice["notice_version"] == "nyc-3" and "recorded video" in notice["data_sources"]


def test_a_policy_change_mid_interview_rescored_every_answer_under_the_new_one(sessions):
    policies = TenantPolicyStore(sessions, ttl_s=0)
    envelopes = messages("acme", None, questions=2)

    def switch(index: int) -> None:
        if index == 6:  # after the first answer was scored under default
            policies.set("acme", "eu")

    events = run_fusion(sessions, policies, envelopes, between=switch)
    first = [e for e in events if e.payload.type == "answer.scored"][0]
    assert first.payload.scorecard["policy"] == "default"
    card = finished(events).payload.scorecard
    assert card["policy"] == "eu"
    assert [a["policy"] for a in card["answers"]] == ["eu", "eu"]


# -- the admin REST route ----------------------------------------------------------------
def call(sessions, requests: list[tuple[str, dict | None]], tenant: str = "acme",
         scopes: tuple[str, ...] = ("admin",)) -> list[httpx.Response]:
    keys = KeyStore(sessions)
    app = FastAPI()
    app.include_router(create_tenant_settings_router(TenantPolicyStore(sessions, ttl_s=0), keys))
    key = keys.create(tenant, list(scopes))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fusion",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            return [await client.request(method, "/v1/tenant/settings", json=body) for method, body in requests]

    return asyncio.run(scenario())


def test_rest_settings_are_the_callers_tenant_and_admin_only(sessions):
    before, refused, nyc, kept, cleared_bad, after = call(sessions, [
        ("GET", None),
        ("PUT", {"policy": "us-nyc"}),
        ("PUT", {"policy": "us-nyc", "notice": NOTICE}),
        ("PUT", {"policy": "us-nyc"}),
        ("PUT", {"policy": "us-nyc", "notice": None}),
        ("GET", None),
    ])
    assert before.status_code == 200
    assert before.json() == {"tenant": "acme", "policy": "default", "notice": None, "stored": False,
                             "updated_at": None}
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_policy"
    assert nyc.status_code == 200 and nyc.json()["notice"] == NOTICE and nyc.json()["stored"] is True
    assert kept.status_code == 200 and kept.json()["notice"] == NOTICE
    assert cleared_bad.status_code == 422  # removing the notice a us-nyc tenant needs
    assert after.json()["policy"] == "us-nyc" and after.json()["notice"] == NOTICE

    (other,) = call(sessions, [("GET", None)], tenant="globex")
    assert other.json()["tenant"] == "globex" and other.json()["policy"] == "default"
    (globex_eu,) = call(sessions, [("PUT", {"policy": "eu"})], tenant="globex")
    (acme_again,) = call(sessions, [("GET", None)])
    assert globex_eu.json()["policy"] == "eu" and acme_again.json()["policy"] == "us-nyc"

    (unknown,) = call(sessions, [("PUT", {"policy": "uk"})])
    assert unknown.status_code == 422
    reader_get, reader_put = call(sessions, [("GET", None), ("PUT", {"policy": "eu"})],
                                  scopes=("scores:read", "interviews:write"))
    assert reader_get.status_code == reader_put.status_code == 403
