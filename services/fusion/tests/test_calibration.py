"""Calibration: known weights recovered, honest blind figures, the activation gate, rater agreement, labels,
models in scoring and fusion, and a tenant's model scoring only that tenant's candidates."""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError

from poise_common.bus.memory import MemoryBus
from poise_common.db.models import ScoringModel
from poise_common.messages import (
    AnswerMediaDone, AudioFeatures, Envelope, InterviewOpened, NlpFeatures, Question, Topics, Transcript, VisionEnd,
)
from poise_common.settings import PoiseSettings
from poise_common.signals import AudioSignals, NlpSignals
from poise_fusion.calibration import (
    MIN_BLIND, UNRECORDED, apply_gate, calibrate, face_methods, failing, fit_nonneg_ridge, gate_rule, icc, is_blind,
    pearson, predict, rater_agreement,
)
from poise_fusion.framework import get_framework
from poise_fusion.labels import LabelsError, read_labels, to_points
from poise_fusion.scoring import AnswerInputs, roll_up, score_answer, score_competency
from poise_fusion.scoring_model import CalibratedModel, CompetencyModel, ModelError, ModelStore
from poise_fusion.service import FusionService
from poise_fusion.store import FusionStore
from poise_fusion.synthetic import RATER_BIAS_SD, RATING_STEP, SyntheticSet, generate

FW = get_framework("generic")
NAMES = [c.name for c in FW.competencies]
LABELLED = 1200


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A population of 6000: the first LABELLED are rated and calibrated on, the rest stay fresh."""
    population = generate(FW, 6000, seed=11)
    labelled = SyntheticSet(FW.name, population.interviews[:LABELLED], population.weights, population.intercepts,
                            framework_spec=FW)
    path = tmp_path_factory.mktemp("labels") / "ratings.csv"
    labelled.write_labels_csv(path)
    documents = {card["interview_id"]: card for card in labelled.scorecards()}
    model, report = calibrate(FW, documents, read_labels(path, NAMES), "generic@1.0+cal.1")
    return population, model, report


def test_calibration_recovers_the_generating_weights(calibrated):
    population, model, report = calibrated
    assert set(model.competencies) == set(NAMES)
    for name, fitted in model.competencies.items():
        truth = population.weights[name]
        total = sum(truth.values())
        assert set(fitted.weights) == set(truth)
        for feature, weight in truth.items():
            assert abs(fitted.weights[feature] - weight) < 0.15 * total, (name, feature)
        # The intercept also absorbs the raters' mean bias (a few points), which no data can separate.
        assert fitted.intercept == pytest.approx(population.intercepts[name], abs=8)
        assert fitted.intercept >= 0 and min(fitted.weights.values()) >= 0
        assert fitted.intercept + fitted.span <= 100 + 1e-9
        figures = report["competencies"][name]
        assert figures["status"] == "calibrated"
        assert figures["n_train"] + figures["n_blind"] == LABELLED
        assert figures["n_blind"] == pytest.approx(LABELLED * 0.25, rel=0.15)
        # The norms' intercept (0) and spread (100 points) are wrong for these raters: calibration fixes that.
        assert figures["blind"]["mae"] < figures["norms_blind"]["mae"]


def test_the_reported_blind_r_brackets_the_models_r_on_a_large_fresh_sample(calibrated):
    population, model, report = calibrated
    fresh = population.interviews[LABELLED:]
    for name in NAMES:
        predicted = [predict(model.competencies[name], i.normalised[name], FW.min_coverage) for i in fresh]
        rated = [np.mean([to_points(r[name], (1, 5)) for r in i.ratings]) for i in fresh]
        true_r = pearson(predicted, rated)
        low, high = report["competencies"][name]["blind"]["pearson"]["ci"]
        assert low <= true_r <= high, (name, true_r, low, high)
        spearman_low, spearman_high = report["competencies"][name]["blind"]["spearman"]["ci"]
        assert spearman_low < spearman_high


def test_the_report_counts_how_the_rated_answers_faces_were_measured(calibrated):
    _, _, report = calibrated
    # Synthetic scorecards, like stored ones from before it was recorded, name no face method.
    assert set(report["face_methods"]) == {UNRECORDED} and report["face_methods"][UNRECORDED] >= LABELLED
    documents = [{"answers": [{"face_method": "a/span-32"}, {"face_method": "a/span-32"}]},
                 {"answers": [{"face_method": None}, {"face_method": "b/span-32"}]}, {"answers": []}]
    assert face_methods(documents) == {"a/span-32": 2, "b/span-32": 1, UNRECORDED: 1}


def test_the_blind_split_is_stable_and_never_trained_on():
    ids = [f"iv{i}" for i in range(2000)]
    blind = {i for i in ids if is_blind(i, 3, 0.25)}
    assert len(blind) / 2000 == pytest.approx(0.25, abs=0.03)
    assert blind == {i for i in ids if is_blind(i, 3, 0.25)}
    assert blind != {i for i in ids if is_blind(i, 4, 0.25)}


def test_icc_matches_shrout_and_fleiss_worked_example():
    # Shrout & Fleiss (1979), Table 2: 6 targets, 4 judges; ICC(2,1) = .29, ICC(2,k) = .62.
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    single, average = icc(ratings)
    assert single == pytest.approx(0.29, abs=0.005)
    assert average == pytest.approx(0.62, abs=0.005)


@pytest.mark.parametrize("noise", [0.2, 0.7])
def test_icc_of_raters_with_known_noise_is_what_theory_predicts(noise):
    synthetic = generate(FW, 600, raters=30, rater_noise=noise, seed=2)
    for name in ("teamwork", "confidence"):
        per_interview = {i.interview_id: {f"r{k:02d}": r[name] for k, r in enumerate(i.ratings)}
                         for i in synthetic.interviews}
        agreement = rater_agreement(per_interview)
        truth = np.array([1 + 4 * i.true_scores[name] / 100 for i in synthetic.interviews])
        signal = truth.var(ddof=1)
        expected = signal / (signal + RATER_BIAS_SD**2 + noise**2 + RATING_STEP**2 / 12)
        assert agreement["design"] == "same raters" and agreement["raters"] == 30
        assert agreement["icc2_1"] == pytest.approx(expected, abs=0.05)
        # Spearman-Brown: the mean of k raters agrees better than one.
        assert agreement["icc2_k"] == pytest.approx(30 * expected / (1 + 29 * expected), abs=0.03)


def test_unbalanced_ratings_use_the_most_common_rater_count():
    per_interview = {f"i{n}": {"a": n, "b": n + 1, "c": n + 0.5} for n in range(10)}
    per_interview |= {f"j{n}": {"a": n, "d": 10 - n} for n in range(4)}  # two raters, disagreeing
    per_interview["k"] = {"a": 3.0}  # one rater: no agreement to measure
    agreement = rater_agreement(per_interview)
    assert agreement["raters"] == 3 and agreement["interviews"] == 10 and agreement["design"] == "same raters"
    assert agreement["icc2_1"] > 0.9
    rotating = {f"i{n}": {("a", "b", "c")[n % 3]: n, ("d", "e")[n % 2]: n + 0.2} for n in range(9)}
    assert rater_agreement(rotating)["design"] == "rater slots"


def test_the_fit_keeps_weights_non_negative_and_scores_within_0_100():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(400, 3))
    exact = 10 + x @ np.array([30.0, 0.0, 50.0])
    intercept, weights = fit_nonneg_ridge(x, exact, 0.0)
    assert intercept == pytest.approx(10, abs=1e-6) and weights == pytest.approx([30, 0, 50], abs=1e-6)
    # A truth with a negative weight and a range past 100: the constraints hold, nothing is clipped later.
    steep = 10 + x @ np.array([120.0, -20.0, 40.0]) + rng.normal(0, 3, size=400)
    intercept, weights = fit_nonneg_ridge(x, steep, 0.01)
    assert intercept >= 0 and weights.min() >= 0
    assert intercept + weights.sum() == pytest.approx(100, abs=1e-6)
    shrunk = fit_nonneg_ridge(x, exact, 1.0)[1]
    assert shrunk.sum() < weights.sum() and shrunk.sum() < 80


def write(tmp_path, text: str):
    path = tmp_path / "ratings.csv"
    path.write_text(text)
    return path


def test_a_labels_file_with_bad_rows_reports_every_row(tmp_path):
    path = write(tmp_path, "\n".join([
        "interview_id,rater_id,confidence,empathy",
        "a,r1,3,4",
        "a,r2,x,4",
        "b,r1,7,",
        "a,r1,3,3",
        "zzz,r1,3,3",
        ",r1,3,3",
        "b,r2,,",
        "b,r3,2.5,1,9",
    ]) + "\n")
    problems = {"zzz": "is not in the store"}
    with pytest.raises(LabelsError) as caught:
        read_labels(path, NAMES, lambda i: problems.get(i))
    assert caught.value.problems == [
        "row 3: confidence: 'x' is not a number",
        "row 4: confidence: 7 is outside the scale 1-5",
        "row 5: duplicate rating of interview a by rater r1 (first on row 2)",
        "row 6: interview zzz is not in the store",
        "row 7: missing interview_id",
        "row 9: 5 cells but the header has 4 columns",
    ]


def test_unknown_competency_columns_are_an_error_and_missing_ones_are_allowed(tmp_path):
    with pytest.raises(LabelsError) as caught:
        read_labels(write(tmp_path, "interview_id,rater_id,charisma\na,r1,3\n"), NAMES)
    assert caught.value.problems[0].startswith("row 1: unknown competency column 'charisma'")
    ratings = read_labels(write(tmp_path, "interview_id,rater_id,empathy\na,r1,0\na,r2,10\nb,r1,\n"),
                          NAMES, scale=(0, 10))
    assert ratings.targets("empathy") == {"a": 50.0}
    assert ratings.targets("confidence") == {}


def test_a_competency_with_too_few_labels_stays_uncalibrated(tmp_path):
    synthetic = generate(FW, 60, seed=5)
    path = tmp_path / "ratings.csv"
    synthetic.write_labels_csv(path)
    lines = path.read_text().splitlines()
    # Teamwork rated for 20 interviews only (blank elsewhere); every other competency for all 60.
    header = lines[0].split(",")
    column = header.index("teamwork")
    rows = [line.split(",") for line in lines[1:]]
    for row in rows[60:]:
        row[column] = ""
    path.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    documents = {card["interview_id"]: card for card in synthetic.scorecards()}
    model, report = calibrate(FW, documents, read_labels(path, NAMES), "generic@1.0+cal.1")
    teamwork = report["competencies"]["teamwork"]
    assert teamwork["status"] == "uncalibrated" and "20 labelled interviews" in teamwork["reason"]
    assert "teamwork" not in model.competencies and "empathy" in model.competencies


def calibrated_on(n_interviews: int, seed: int, tmp_path) -> dict:
    """The report of a calibration on ``n_interviews`` rated synthetic interviews (a quarter of them blind)."""
    synthetic = generate(FW, n_interviews, seed=seed)
    path = tmp_path / "ratings.csv"
    synthetic.write_labels_csv(path)
    documents = {card["interview_id"]: card for card in synthetic.scorecards()}
    return calibrate(FW, documents, read_labels(path, NAMES), "generic@1.0+cal.1")[1]


def test_a_model_passes_the_gate_where_every_blind_intervals_lower_end_reaches_the_bar(calibrated):
    report = copy.deepcopy(calibrated[2])  # the module's report stays as calibrated
    assert apply_gate(report, 0.6) == []
    assert report["gate"] == {"rule": gate_rule(0.6), "bar": 0.6, "min_blind": MIN_BLIND}
    lows = {}
    for name, figures in report["competencies"].items():
        low, high = figures["blind"]["pearson"]["ci"]
        assert low >= 0.6 and figures["blind"]["n"] >= MIN_BLIND, name
        assert figures["verdict"]["passes"] and f"[{low:.2f}, {high:.2f}]" in figures["verdict"]["reason"]
        lows[name] = low
    # A bar between two lower ends: exactly the competencies whose interval reaches below it fail.
    ordered = sorted(lows.values())
    bar = (ordered[2] + ordered[3]) / 2
    assert failing(report, bar) == [name for name, low in lows.items() if low < bar]
    assert len(failing(report, bar)) == 3


def test_blind_rs_above_the_bar_whose_intervals_reach_below_it_are_refused(tmp_path):
    report = calibrated_on(120, 1, tmp_path)  # about 30 blind interviews: intervals of about +-0.15
    below = apply_gate(report, 0.6)
    blind = {name: figures["blind"] for name, figures in report["competencies"].items()}
    # Every point estimate reaches the bar: r alone would have activated this model.
    assert all(b["pearson"]["r"] >= 0.6 and b["n"] >= MIN_BLIND for b in blind.values())
    assert below == [name for name, b in blind.items() if b["pearson"]["ci"][0] < 0.6]
    assert 0 < len(below) < len(blind)
    for name in below:
        verdict = report["competencies"][name]["verdict"]
        assert not verdict["passes"] and verdict["reason"].endswith("lower end below 0.6")


def test_too_few_blind_interviews_fail_the_gate_whatever_their_r(tmp_path):
    report = calibrated_on(60, 5, tmp_path)  # about 15 blind interviews
    counts = {name: figures["blind"]["n"] for name, figures in report["competencies"].items()}
    assert max(counts.values()) < MIN_BLIND
    assert apply_gate(report, 0.0) == list(counts)
    for name, n in counts.items():
        assert report["competencies"][name]["verdict"]["reason"] == f"{n} blind interviews, fewer than {MIN_BLIND}"


def test_a_competency_without_a_blind_interval_fails_and_an_uncalibrated_one_is_not_judged():
    report = {"competencies": {
        "a": {"status": "calibrated", "blind": {"n": 40, "pearson": {"r": None, "ci": None}}},
        "b": {"status": "uncalibrated", "reason": "no ratings in the file"},
    }}
    assert apply_gate(report, 0.0) == ["a"]
    assert "verdict" not in report["competencies"]["b"]


def answer(**signals) -> AnswerInputs:
    groups: dict[str, dict] = {"vision": {}, "audio": {}, "nlp": {}}
    for key, value in signals.items():
        group, name = key.split("__")
        groups[group][name] = value
    return AnswerInputs(answer_id="a1", question_id="q1", duration_s=30.0, signals=groups)


TEAMWORK = next(c for c in FW.competencies if c.name == "teamwork")


def test_a_calibrated_score_is_intercept_plus_weighted_features_and_its_parts_add_up():
    model = CompetencyModel(10.0, {"nlp.we_ratio": 50.0, "nlp.perspective_taking_rate": 40.0})
    full = score_competency(FW, TEAMWORK, answer(nlp__we_ratio=0.325, nlp__perspective_taking_rate=0.5), model=model)
    # we_ratio 0.325 on 0.05..0.6 -> 0.5; perspective 0.5 on 0..2 -> 0.25
    assert full["score"] == pytest.approx(10 + 50 * 0.5 + 40 * 0.25)
    assert full["contributions"][0] == {
        "feature": "baseline", "behaviour": "calibrated baseline", "modality": None, "value": 1.0,
        "normalised": 1.0, "weight": 10.0, "points": 10.0,
    }
    assert sum(c["points"] for c in full["contributions"]) == full["score"]
    # One feature missing: the measured weight is scaled up to the whole span, as the norms renormalise.
    partial = score_competency(FW, TEAMWORK, answer(nlp__we_ratio=0.325), model=model)
    assert partial["coverage"] == pytest.approx(50 / 90, abs=1e-4)
    assert partial["score"] == pytest.approx(10 + 90 * 0.5)
    sparse = score_competency(FW, TEAMWORK, answer(nlp__perspective_taking_rate=0.5), model=model)
    assert sparse["status"] == "insufficient_evidence"  # 40 of 90 < min_coverage 0.5


def test_calibrated_scores_stay_within_0_100_and_add_up_exactly_to_the_cent():
    rng = np.random.default_rng(3)
    for _ in range(300):
        weights = rng.dirichlet(np.ones(2)) * rng.uniform(30, 100)
        model = CompetencyModel(float(rng.uniform(0, 100 - weights.sum())),
                                dict(zip(["nlp.we_ratio", "nlp.perspective_taking_rate"], map(float, weights))))
        inputs = [answer(nlp__we_ratio=float(rng.uniform(0, 0.7)), nlp__perspective_taking_rate=float(rng.uniform(0, 3)))
                  for _ in range(3)]
        per_answer = [score_answer(FW, a, model=CalibratedModel("v", "generic", "1.0", "default", {"teamwork": model}))
                      for a in inputs]
        for result in [a[NAMES.index("teamwork")] for a in per_answer] + [roll_up(FW, per_answer)[NAMES.index("teamwork")]]:
            assert 0 <= result["score"] <= 100
            assert round(sum(c["points"] for c in result["contributions"]), 2) == result["score"]
    top = CompetencyModel(30.0, {"nlp.we_ratio": 35.0, "nlp.perspective_taking_rate": 35.0})
    best = score_competency(FW, TEAMWORK, answer(nlp__we_ratio=0.9, nlp__perspective_taking_rate=5), model=top)
    assert best["score"] == 100.0


def test_models_belong_to_a_tenant_and_one_is_active_per_tenant_and_framework(sessions):
    now = [0.0]
    fusion_view = ModelStore(sessions, cache_s=5.0, clock=lambda: now[0])
    admin = ModelStore(sessions)
    first = admin.next_version(FW)
    assert first == "generic@1.0+cal.1"
    parameters = {"teamwork": CompetencyModel(5.0, {"nlp.we_ratio": 60.0})}
    admin.save("acme", CalibratedModel(first, "generic", "1.0", "default", parameters), {"competencies": {}})
    second = admin.next_version(FW)
    assert second == "generic@1.0+cal.2"
    admin.save("acme", CalibratedModel(second, "generic", "1.0", "default", parameters), {"competencies": {}})
    assert fusion_view.active("acme", FW) is None
    admin.activate("acme", first)
    assert fusion_view.active("acme", FW) is None  # cached for a few seconds...
    now[0] = 6.0
    assert fusion_view.active("acme", FW).version == first  # ...then seen without a restart
    assert fusion_view.active("othercorp", FW) is None  # acme's raters never score othercorp's candidates
    with pytest.raises(ModelError):
        admin.activate("othercorp", first)
    admin.activate("acme", second, forced=True)
    assert [(r.tenant, r.version, r.active, r.forced) for r in admin.list("acme", "generic")] == [
        ("acme", first, False, False), ("acme", second, True, True)]
    assert admin.list("othercorp") == []
    # Versions are numbered across tenants; othercorp's own model is active beside acme's.
    third = admin.next_version(FW)
    assert third == "generic@1.0+cal.3"
    admin.save("othercorp", CalibratedModel(third, "generic", "1.0", "default", parameters), {"competencies": {}})
    admin.activate("othercorp", third)
    fresh = ModelStore(sessions, cache_s=0)
    assert (fresh.active("acme", FW).version, fresh.active("othercorp", FW).version) == (second, third)
    newer = FW.model_copy(update={"version": "1.1"})
    assert fresh.active("acme", newer) is None  # calibrated for 1.0 only
    assert admin.deactivate("acme", "generic") == [second]
    assert fresh.active("acme", FW) is None and fresh.active("othercorp", FW).version == third
    assert [r.tenant for r in admin.list(None)] == ["acme", "acme", "othercorp"]
    assert admin.next_version(newer) == "generic@1.1+cal.4"
    # The database itself refuses a second active model of one tenant's framework.
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(ScoringModel(version="generic@1.0+cal.9", tenant="othercorp", framework="generic",
                                 framework_version="1.0", parameters={}, report={}, active=True))


def messages(answer_id: str, question_id: str, interview_id: str = "iv", tenant: str = "acme") -> list[Envelope]:
    def env(stream: str, seq: int, payload) -> Envelope:
        return Envelope(interview_id=interview_id, answer_id=answer_id, tenant=tenant, stream=stream, seq=seq,
                        payload=payload)

    audio = AudioSignals(duration_s=30.0, speech_s=25.0, speech_ratio=0.8, pause_ratio=0.2, mean_pause_s=0.6,
                         speech_rate_wpm=140.0, pitch_variation_st=2.5)
    nlp = NlpSignals(word_count=80, filler_rate=2.0, hedge_rate=1.0, we_ratio=0.4, lexical_diversity=0.7,
                     mean_sentence_words=15.0, star_coverage=0.5, relevance=0.2, question_reference_rate=2.0,
                     perspective_taking_rate=1.0, sentiment=0.3)
    return [
        env("control", 1, AnswerMediaDone(question_id=question_id, duration_s=30.0, frame_count=0, audio_count=2,
                                          has_video=True, sample_fps=10.0)),
        env("vision", 0, VisionEnd(count=0)),
        env("transcript", 0, Transcript(duration_s=30.0, segments=[])),
        env("audio", 0, AudioFeatures(signals=audio)),
        env("nlp", 0, NlpFeatures(signals=nlp)),
    ]


def test_a_model_activated_mid_interview_makes_the_whole_scorecard(sessions):
    async def scenario():
        bus = MemoryBus()
        await bus.start()
        events: list[Envelope] = []

        async def record(env: Envelope) -> None:
            events.append(env)

        await bus.subscribe([Topics.SCORECARDS], "test", record)
        service = FusionService(bus, FusionStore(sessions), PoiseSettings())
        service.models.cache_s = 0  # the test does not wait out the cache
        await service.handle(Envelope(interview_id="iv", tenant="acme", stream="control", seq=0, payload=InterviewOpened(
            role="generic", questions=[Question(question_id="q1", text="Why?"), Question(question_id="q2", text="How?")])))
        for env in messages("iv-a1", "q1"):
            await service.handle(env)
        store = ModelStore(sessions)
        version = store.next_version(FW)
        model = CalibratedModel(version, "generic", "1.0", "default", {
            "teamwork": CompetencyModel(12.0, {"nlp.we_ratio": 50.0, "nlp.perspective_taking_rate": 30.0}),
        })
        store.save("acme", model, {"competencies": {}})
        store.activate("acme", version)
        for env in messages("iv-a2", "q2"):
            await service.handle(env)
        while len(events) < 3:
            await asyncio.sleep(0.01)
        await bus.stop()
        return version, events

    version, events = asyncio.run(scenario())
    first_answer, second_answer, interview = (e.payload.scorecard for e in events)
    assert first_answer["model_version"] == "generic@1.0+norms"  # scored before the activation
    assert second_answer["model_version"] == version
    assert interview["model_version"] == version
    assert {a["model_version"] for a in interview["answers"]} == {version}
    teamwork = next(c for c in interview["competencies"] if c["name"] == "teamwork")
    # we_ratio 0.4 -> (0.4-0.05)/0.55; perspective 1.0 on 0..2 -> 0.5; both answers alike.
    assert teamwork["score"] == pytest.approx(12 + 50 * 0.35 / 0.55 + 30 * 0.5, abs=0.01)
    assert teamwork["contributions"][0]["feature"] == "baseline"
    for competency in interview["competencies"]:
        if competency["status"] == "scored":
            assert round(sum(c["points"] for c in competency["contributions"]), 2) == competency["score"]
    empathy = next(c for c in interview["competencies"] if c["name"] == "empathy")
    assert all(c["feature"] != "baseline" for c in empathy["contributions"])  # not calibrated: the norms


def scored_interviews(sessions, tenants: dict[str, str]) -> dict[str, dict]:
    """Interview id -> its scorecard, for interviews (id -> tenant) that each answer one question alike."""
    async def scenario() -> dict[str, dict]:
        bus = MemoryBus()
        await bus.start()
        scorecards: dict[str, dict] = {}

        async def record(env: Envelope) -> None:
            if env.payload.type == "interview.scored":
                scorecards[env.interview_id] = env.payload.scorecard

        await bus.subscribe([Topics.SCORECARDS], "test", record)
        service = FusionService(bus, FusionStore(sessions), PoiseSettings())
        for interview_id, tenant in tenants.items():
            await service.handle(Envelope(interview_id=interview_id, tenant=tenant, stream="control", seq=0,
                                          payload=InterviewOpened(role="generic", questions=[Question(
                                              question_id="q1", text="Why?")])))
            for env in messages(f"{interview_id}-a1", "q1", interview_id, tenant):
                await service.handle(env)
        while len(scorecards) < len(tenants):
            await asyncio.sleep(0.01)
        await bus.stop()
        return scorecards

    return asyncio.run(scenario())


def test_a_tenants_calibrated_model_scores_its_own_candidates_only(calibrated, sessions):
    _, model, report = calibrated  # fitted on real ratings of acme's interviews
    store = ModelStore(sessions)
    store.save("acme", model, report)
    store.activate("acme", model.version)
    scorecards = scored_interviews(sessions, {"iv-acme": "acme", "iv-other": "othercorp"})
    acme, other = scorecards["iv-acme"], scorecards["iv-other"]
    assert acme["model_version"] == model.version == "generic@1.0+cal.1"
    assert other["model_version"] == "generic@1.0+norms"  # the framework's norms, untouched by acme's raters
    scored = [(mine, theirs) for mine, theirs in zip(acme["competencies"], other["competencies"])
              if mine["status"] == theirs["status"] == "scored"]
    assert {mine["name"] for mine, _ in scored} >= {"communication_clarity", "teamwork"}
    for mine, theirs in scored:
        baseline = mine["contributions"][0]
        assert baseline["feature"] == "baseline"
        assert baseline["weight"] == pytest.approx(model.competencies[mine["name"]].intercept, abs=0.01)
        assert all(c["feature"] != "baseline" for c in theirs["contributions"])
    # The same answers, scored apart: acme's fit moves acme's scores only.
    assert any(mine["score"] != theirs["score"] for mine, theirs in scored)
