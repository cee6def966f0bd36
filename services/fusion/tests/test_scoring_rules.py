"""Frameworks, norms, additive contributions, insufficient evidence and the roll-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from poise_fusion.framework import FeatureWeight, FrameworkError, available_frameworks, get_framework, load_framework_file
from poise_fusion.scoring import AnswerInputs, roll_up, score_answer, score_competency
from poise_fusion.scoring_model import CompetencyModel

# Words that name a feeling or a trait: a behaviour is what the camera or microphone recorded.
AFFECT_WORDS = {"warm", "warmth", "friendly", "energetic", "happy", "sad", "nervous", "enthusiastic",
                "expressive", "emotional", "calm", "anxious", "confident", "empathetic", "excited"}


def inputs(**signals) -> AnswerInputs:
    groups: dict[str, dict] = {"vision": {}, "audio": {}, "nlp": {}}
    for key, value in signals.items():
        group, name = key.split("__")
        groups[group][name] = value
    return AnswerInputs(answer_id="a1", question_id="q1", duration_s=30.0, signals=groups)


def test_bundled_frameworks_load():
    frameworks = available_frameworks()
    assert {"generic", "sales-development-rep"} <= set(frameworks)
    assert "resilience" in {c.name for c in frameworks["sales-development-rep"].competencies}


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({"direction": "higher", "norm": {"low": 0, "high": 10}}, 5, 0.5),
        ({"direction": "higher", "norm": {"low": 0, "high": 10}}, 20, 1.0),
        ({"direction": "lower", "norm": {"low": 0, "high": 10}}, 2, 0.8),
        ({"direction": "lower", "norm": {"low": 0, "high": 10}}, -5, 1.0),
        ({"direction": "target", "norm": {"target": 150, "tolerance": 50}}, 175, 0.5),
        ({"direction": "target", "norm": {"target": 150, "tolerance": 50}}, 90, 0.0),
    ],
)
def test_norms(spec, value, expected):
    feature = FeatureWeight(feature="nlp.filler_rate", weight=1, **spec)
    assert feature.normalise(value) == pytest.approx(expected)


def test_contributions_add_up_and_missing_features_drop_out():
    framework = get_framework("generic")
    full = inputs(
        nlp__filler_rate=2.0, audio__pause_ratio=0.2, audio__speech_rate_wpm=140,
        nlp__mean_sentence_words=15, nlp__lexical_diversity=0.7,
    )
    clarity = next(c for c in score_answer(framework, full) if c["name"] == "communication_clarity")
    assert clarity["status"] == "scored"
    assert sum(c["points"] for c in clarity["contributions"]) == pytest.approx(clarity["score"], abs=0.011)
    assert len(clarity["contributions"]) == 5 and clarity["coverage"] == 1.0
    # filler_rate: lower, low 0.5 high 8 -> (1 - 1.5/7.5) = 0.8 with weight 2 of 6
    filler = next(c for c in clarity["contributions"] if c["feature"] == "nlp.filler_rate")
    assert filler["points"] == pytest.approx(100 * 2 * 0.8 / 6, abs=0.01)

    partial = inputs(nlp__filler_rate=2.0, audio__pause_ratio=0.2, audio__speech_rate_wpm=140)
    clarity2 = next(c for c in score_answer(framework, partial) if c["name"] == "communication_clarity")
    assert clarity2["coverage"] == pytest.approx(4 / 6, abs=1e-3)
    assert len(clarity2["contributions"]) == 3


def test_too_little_coverage_or_no_speech_is_insufficient_not_zero():
    framework = get_framework("generic")
    sparse = inputs(nlp__lexical_diversity=0.7)  # 1 of 6 weight
    clarity = next(c for c in score_answer(framework, sparse) if c["name"] == "communication_clarity")
    assert clarity["score"] is None and clarity["status"] == "insufficient_evidence"
    silent = inputs(nlp__filler_rate=0.0, audio__pause_ratio=0.0)
    silent.has_speech = False
    for comp in score_answer(framework, silent):
        assert comp["score"] is None and comp["band"] == "insufficient_evidence"


def test_coverage_is_a_share_of_the_frameworks_whole_weight_not_of_the_policys_part():
    framework = get_framework("generic")
    measured = inputs(nlp__hedge_rate=0.0, audio__pitch_variation_st=3.0, audio__mean_pause_s=0.5,
                      vision__eye_contact_ratio=0.8)
    default, eu = (next(c for c in score_answer(framework, measured, policy) if c["name"] == "confidence")
                   for policy in ("default", "eu"))
    assert default["status"] == "scored" and default["coverage"] == 1.0
    # eu lets only the hedges feed Confidence: 2 of its weight of 5, under min_coverage 0.5.
    assert eu["score"] is None and eu["coverage"] == 0.4
    assert eu["reason"] == "the eu policy lets only 40% of its weight feed a score, under the 50% it needs"
    only_hedges = inputs(nlp__hedge_rate=0.0)
    alone = next(c for c in score_answer(framework, only_hedges) if c["name"] == "confidence")
    assert alone["score"] is None and alone["reason"] == "too few of its signals could be measured"
    # Empathy keeps 3 of its 4 in what was said, and is scored under eu with that coverage.
    empathy_inputs = inputs(nlp__perspective_taking_rate=1.0, nlp__sentiment=0.2, vision__smile_ratio=0.3)
    empathy = next(c for c in score_answer(framework, empathy_inputs, "eu") if c["name"] == "empathy")
    assert empathy["status"] == "scored" and empathy["coverage"] == 0.75


def test_a_calibrated_competency_needs_the_frameworks_coverage_as_well_as_its_own():
    framework = get_framework("generic")
    teamwork = next(c for c in framework.competencies if c.name == "teamwork")
    # All of the model's weight is on perspective-taking, which is 1 of teamwork's 3 in the framework.
    model = CompetencyModel(10.0, {"nlp.perspective_taking_rate": 60.0})
    alone = score_competency(framework, teamwork, inputs(nlp__perspective_taking_rate=1.0), model=model)
    assert alone["score"] is None and alone["coverage"] == pytest.approx(1 / 3, abs=1e-4)
    both = score_competency(framework, teamwork, inputs(nlp__perspective_taking_rate=1.0, nlp__we_ratio=0.3),
                            model=model)
    assert both["score"] == pytest.approx(10 + 60 * 0.5) and both["coverage"] == 1.0


def test_evidence_points_at_quotes_episodes_and_signals():
    framework = get_framework("generic")
    answer = inputs(nlp__hedge_rate=3.0, audio__pitch_variation_st=2.0, audio__mean_pause_s=0.8,
                    vision__eye_contact_ratio=0.4)
    answer.quotes = [{"feature": "hedges", "text": "I think maybe", "start_s": 3.0, "end_s": 4.5}]
    answer.episodes = [{"behaviour": "gaze_away", "start_s": 10.0, "end_s": 12.0, "peak": None}]
    confidence = next(c for c in score_answer(framework, answer) if c["name"] == "confidence")
    kinds = {e["kind"] for e in confidence["evidence"]}
    assert kinds == {"quote", "episode", "signal"}
    quote = next(e for e in confidence["evidence"] if e["kind"] == "quote")
    assert (quote["text"], quote["start_s"], quote["end_s"]) == ("I think maybe", 3.0, 4.5)


def test_episode_evidence_is_the_strongest_episodes_in_time_order():
    framework = get_framework("generic")
    answer = inputs(nlp__perspective_taking_rate=1.0, nlp__sentiment=0.2, vision__smile_ratio=0.3)
    # Four smiles: the long, clear one comes last; the brief one at 6 s is the weakest.
    answer.episodes = [{"behaviour": "smile", "start_s": start, "end_s": end, "peak": peak}
                       for start, end, peak in [(0.0, 3.0, 0.94), (4.4, 5.8, 0.74), (6.0, 6.6, 0.9),
                                                (9.5, 11.5, 0.85), (12.2, 19.7, 0.98)]]
    empathy = next(c for c in score_answer(framework, answer) if c["name"] == "empathy")
    smiles = [(e["start_s"], e["end_s"]) for e in empathy["evidence"] if e["kind"] == "episode"]
    assert smiles == [(0.0, 3.0), (9.5, 11.5), (12.2, 19.7)]
    # A yes/no behaviour without a peak is ranked by its duration.
    answer = inputs(nlp__hedge_rate=1.0, vision__eye_contact_ratio=0.5)
    answer.episodes = [{"behaviour": "gaze_away", "start_s": start, "end_s": end, "peak": None}
                       for start, end in [(1.0, 2.6), (3.0, 4.6), (5.0, 6.6), (8.0, 12.0)]]
    confidence = next(c for c in score_answer(framework, answer) if c["name"] == "confidence")
    away = [e["start_s"] for e in confidence["evidence"] if e["kind"] == "episode"]
    assert away == [1.0, 3.0, 8.0]


def test_behaviours_are_named_for_what_is_measured_not_for_a_feeling_or_trait():
    for framework in available_frameworks().values():
        for competency in framework.competencies:
            for behaviour in competency.behaviours:
                words = set(behaviour.name.replace(",", " ").split())
                assert not words & AFFECT_WORDS, (framework.name, behaviour.name)
                if any(f.feature == "vision.smile_ratio" for f in behaviour.features):
                    assert behaviour.name == "smiling on camera"


def test_roll_up_is_the_mean_of_scored_answers_contribution_by_contribution():
    framework = get_framework("generic")
    a = score_answer(framework, inputs(nlp__relevance=0.3, nlp__question_reference_rate=6))
    b = score_answer(framework, inputs(nlp__relevance=0.03, nlp__question_reference_rate=0))
    silent_inputs = inputs(nlp__relevance=0.3)
    silent_inputs.has_speech = False
    c = score_answer(framework, silent_inputs)
    [listening] = [x for x in roll_up(framework, [a, b, c]) if x["name"] == "active_listening"]
    assert listening["answers_scored"] == 2
    assert listening["score"] == pytest.approx(50.0, abs=0.01)
    assert sum(x["points"] for x in listening["contributions"]) == pytest.approx(listening["score"], abs=0.011)


def test_invalid_framework_names_the_field(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nversion: '1'\nbands: [{name: a, below: 101}]\ncompetencies:\n"
        "  - name: c\n    label: C\n    behaviours:\n      - name: b\n        features:\n"
        "          - {feature: nlp.filler_rate, weight: 1, direction: sideways, norm: {low: 0, high: 1}}\n"
    )
    with pytest.raises(FrameworkError) as info:
        load_framework_file(bad)
    assert "bad.yaml:10: competencies[0].behaviours[0].features[0].direction" in str(info.value)
    bad.write_text("name: [unclosed")
    with pytest.raises(FrameworkError, match="not valid YAML"):
        load_framework_file(bad)


def test_unknown_role_lists_the_known_ones():
    with pytest.raises(FrameworkError, match="generic"):
        get_framework("pilot")
