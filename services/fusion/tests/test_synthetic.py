"""The synthetic data generator: reproducible, consistent with scoring's own feature path, with known truth."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from poise_fusion.audit import RACE_ETHNICITY
from poise_fusion.calibration import stored_features
from poise_fusion.framework import get_framework
from poise_fusion.labels import read_labels, to_points
from poise_fusion.synthetic import generate

FW = get_framework("generic")


def test_the_same_seed_gives_the_same_interviews_and_a_larger_set_extends_a_smaller_one():
    small, large = generate(FW, 20, seed=4), generate(FW, 60, seed=4)
    assert [i.interview_id for i in large.interviews[:20]] == [i.interview_id for i in small.interviews]
    assert [i.signals for i in large.interviews[:20]] == [i.signals for i in small.interviews]
    assert [i.ratings for i in large.interviews[:20]] == [i.ratings for i in small.interviews]
    assert large.weights == small.weights and large.intercepts == small.intercepts
    other = generate(FW, 20, seed=5)
    assert [i.signals for i in other.interviews] != [i.signals for i in small.interviews]


def test_weights_are_non_negative_and_keep_every_true_score_within_0_100():
    synthetic = generate(FW, 300, seed=1)
    assert set(synthetic.weights) == {c.name for c in FW.competencies}
    for competency in FW.competencies:
        weights = synthetic.weights[competency.name]
        assert set(weights) == {f.feature for f in competency.features}
        assert min(weights.values()) > 0
        assert 0 <= synthetic.intercepts[competency.name] <= synthetic.intercepts[competency.name] + sum(weights.values()) <= 100
    for interview in synthetic.interviews:
        for name, score in interview.true_scores.items():
            expected = synthetic.intercepts[name] + sum(
                w * interview.normalised[name][f] for f, w in synthetic.weights[name].items()
            )
            assert score == pytest.approx(expected)
            assert 0 <= score <= 100


def test_stored_scorecards_give_back_the_generated_normalised_values():
    synthetic = generate(FW, 40, seed=2)
    cards = synthetic.scorecards()
    assert [c["interview_id"] for c in cards] == [i.interview_id for i in synthetic.interviews]
    for card, interview in zip(cards, synthetic.interviews):
        assert card["role"] == "generic" and card["answers"][0]["signals"] == interview.signals
        features = stored_features(FW, card)
        for name, values in interview.normalised.items():
            assert set(features[name]) == set(values)
            for feature, value in values.items():
                assert 0 <= value <= 1
                assert features[name][feature] == pytest.approx(value, abs=1e-9)
        for competency in card["competencies"]:
            assert competency["status"] == "scored"
            assert sum(c["points"] for c in competency["contributions"]) == pytest.approx(competency["score"], abs=1e-9)


def test_ratings_follow_the_true_score_on_the_scale_in_half_steps():
    synthetic = generate(FW, 500, raters=4, seed=3)
    ratings = np.array([[r["teamwork"] for r in i.ratings] for i in synthetic.interviews])
    truth = np.array([i.true_scores["teamwork"] for i in synthetic.interviews])
    assert ratings.shape == (500, 4)
    assert ratings.min() >= 1 and ratings.max() <= 5
    assert np.all(np.mod(ratings * 2, 1) == 0)
    assert np.corrcoef(ratings.mean(axis=1), truth)[0, 1] > 0.8
    # On average a rating sits where the true score maps to, give or take the raters' small biases.
    assert abs(np.mean(1 + 4 * truth / 100) - ratings.mean()) < 0.3


def test_demographics_are_drawn_at_realistic_shares_with_some_unknown():
    synthetic = generate(FW, 3000, seed=0)
    sexes = Counter(i.sex for i in synthetic.interviews)
    races = Counter(i.race_ethnicity for i in synthetic.interviews)
    assert sexes["female"] / 3000 == pytest.approx(0.47, abs=0.03)
    assert sexes[None] / 3000 == pytest.approx(0.08, abs=0.02)
    assert set(races) - {None} <= set(RACE_ETHNICITY)
    assert races["White"] > races["Black or African American"] > races["Native Hawaiian or Pacific Islander"]
    assert races[None] / 3000 == pytest.approx(0.095, abs=0.02)


def test_disparity_moves_the_measurements_and_scores_of_its_group_only():
    plain = generate(FW, 400, seed=6)
    shifted = generate(FW, 400, seed=6, disparity={"race_ethnicity=Black or African American": -20, "sex=male": 5})
    moved: dict[int, list[float]] = {-20: [], 5: [], -15: []}
    for a, b in zip(plain.interviews, shifted.interviews):
        expected = (-20 if a.race_ethnicity == "Black or African American" else 0) + (5 if a.sex == "male" else 0)
        if expected == 0:  # everyone else is the same interview, measurement for measurement
            assert b.signals == a.signals and b.true_scores == a.true_scores
            continue
        assert b.signals != a.signals  # the disparity is in what is measured, not only in the truth
        moved[expected] += [b.true_scores[n] - a.true_scores[n] for n in a.true_scores]
    # About the injected points on average (less where values hit the ends of their norms).
    for expected, deltas in moved.items():
        assert deltas and 0.6 * abs(expected) <= abs(sum(deltas) / len(deltas)) <= 1.4 * abs(expected), expected
        assert all(d * expected >= -1e-9 for d in deltas)  # never the other way
    with pytest.raises(ValueError, match="disparity key"):
        generate(FW, 5, disparity={"race_ethnicity=Martian": -5})


def test_the_labels_file_carries_every_rating_and_maps_onto_another_scale(tmp_path):
    synthetic = generate(FW, 30, raters=2, seed=7)
    names = [c.name for c in FW.competencies]
    synthetic.write_labels_csv(tmp_path / "five.csv")
    synthetic.write_labels_csv(tmp_path / "ten.csv", scale=(0, 10))
    five = read_labels(tmp_path / "five.csv", names)
    ten = read_labels(tmp_path / "ten.csv", names, scale=(0, 10))
    first = synthetic.interviews[0]
    for name in names:
        expected = sum(to_points(r[name], (1, 5)) for r in first.ratings) / 2
        assert five.targets(name)[first.interview_id] == pytest.approx(expected)
        assert ten.targets(name)[first.interview_id] == pytest.approx(expected)
    assert five.interviews == {i.interview_id for i in synthetic.interviews}
