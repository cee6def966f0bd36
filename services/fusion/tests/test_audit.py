"""The bias audit's arithmetic on a sample small enough to check by hand, its edge cases, and its reports."""

from __future__ import annotations

import json
from datetime import date

import pytest

from poise_fusion.audit import (
    RACE_ETHNICITY,
    AuditError,
    AuditRecord,
    normalise_category,
    run_audit,
    subject_score,
)
from poise_fusion.audit_report import render, to_html, to_markdown

W, A, B = "White", "Asian", "Black or African American"
# Twenty candidates scored 1..20, so the median is 10.5 and exactly 11..20 score above it.
SEX_OF = {"female": [1, 2, 3, 4, 5, 11, 12, 13], "male": [6, 7, 8, 9, 10, 14, 15, 16, 17, 18], None: [19, 20]}
RACE_OF = {W: [6, 7, 8, 9, 11, 14, 15, 16, 20], A: [1, 2, 12, 17, 18], B: [3, 4, 5, 10, 13], None: [19]}


def hand_sample() -> list[AuditRecord]:
    sex = {score: s for s, scores in SEX_OF.items() for score in scores}
    race = {score: r for r, scores in RACE_OF.items() for score in scores}
    return [AuditRecord(f"iv{score:02d}", float(score), sex[score], race[score]) for score in range(1, 21)]


def rows(result, dimension: str) -> dict[str, dict]:
    return {c["category"]: c for c in result.to_json()["dimensions"][dimension]["categories"]}


def flagged(result) -> set[tuple[str, str]]:
    return {(f["dimension"], f["category"]) for f in result.flags if f["code"] == "four_fifths"}


def test_scoring_rates_and_impact_ratios_match_the_hand_computation():
    result = run_audit(hand_sample(), role="generic", data_source="test", audit_date=date(2025, 3, 1))
    assert result.median == 10.5 and result.sample_size == 20 and result.mode == "scoring_rate"
    assert result.competency == "overall" and result.audit_date == "2025-03-01" and result.threshold is None

    sex = rows(result, "sex")
    # female: 11, 12, 13 of 8 above the median -> 3/8; male: 14..18 of 10 -> 5/10; ratio 0.375/0.5.
    assert (sex["female"]["count"], sex["female"]["passed"], sex["female"]["rate"]) == (8, 3, 0.375)
    assert (sex["male"]["count"], sex["male"]["passed"], sex["male"]["rate"]) == (10, 5, 0.5)
    assert sex["female"]["share"] == pytest.approx(0.4)
    assert sex["female"]["impact_ratio"] == pytest.approx(0.75) and sex["female"]["four_fifths"]
    assert sex["male"]["impact_ratio"] == 1.0 and not sex["male"]["four_fifths"]
    assert result.dimensions["sex"].unknown == 2 and result.dimensions["sex"].highest_rate == 0.5

    race = rows(result, "race_ethnicity")
    # White: 11, 14, 15, 16, 20 of 9; Asian: 12, 17, 18 of 5 (the highest, 0.6); Black: 13 of 5.
    assert (race[W]["passed"], race[A]["passed"], race[B]["passed"]) == (5, 3, 1)
    assert race[W]["impact_ratio"] == pytest.approx((5 / 9) / 0.6)  # 0.926
    assert race[A]["impact_ratio"] == 1.0
    assert race[B]["impact_ratio"] == pytest.approx(0.2 / 0.6)  # 0.333
    assert [race[c]["four_fifths"] for c in (W, A, B)] == [False, False, True]
    assert result.dimensions["race_ethnicity"].unknown == 1
    absent = [c for c in RACE_ETHNICITY if c not in (W, A, B)]
    assert all(race[c]["excluded"] and race[c]["count"] == 0 and race[c]["rate"] is None for c in absent)
    assert all(race[c]["exclusion_reason"] == "no one in the sample" for c in absent)

    both = rows(result, "intersectional")
    # female/White {11}, female/Asian {1, 2, 12}, female/Black {3, 4, 5, 13},
    # male/White {6..9, 14, 15, 16}, male/Asian {17, 18}, male/Black {10}.
    expected = {"female / White": (1, 1), "female / Asian": (3, 1), "female / Black or African American": (4, 1),
                "male / White": (7, 3), "male / Asian": (2, 2), "male / Black or African American": (1, 0)}
    for category, (count, passed) in expected.items():
        assert (both[category]["count"], both[category]["passed"]) == (count, passed), category
        assert both[category]["impact_ratio"] == pytest.approx(passed / count), category  # the highest rate is 1.0
    assert result.dimensions["intersectional"].unknown == 2
    assert flagged(result) == {
        ("sex", "female"), ("race_ethnicity", B), ("intersectional", "female / Asian"),
        ("intersectional", "female / Black or African American"), ("intersectional", "male / White"),
        ("intersectional", "male / Black or African American"),
    }


def test_selection_rate_passes_at_or_above_the_threshold():
    result = run_audit(hand_sample(), role="generic", mode="selection_rate", threshold=15)
    # 15..20 pass (15 itself included): female none of 8, male 15..18 -> 4 of 10.
    sex = rows(result, "sex")
    assert (sex["female"]["passed"], sex["male"]["passed"]) == (0, 4)
    assert sex["female"]["rate"] == 0 and sex["female"]["impact_ratio"] == 0 and sex["female"]["four_fifths"]
    race = rows(result, "race_ethnicity")
    # White 15, 16, 20 -> 3/9; Asian 17, 18 -> 2/5 (highest); Black none.
    assert race[W]["impact_ratio"] == pytest.approx((3 / 9) / 0.4)
    assert race[A]["impact_ratio"] == 1.0 and race[B]["impact_ratio"] == 0
    assert result.threshold == 15 and result.median == 10.5


def sex_split(passed: dict[str, tuple[int, int]], below: int = 0) -> list[AuditRecord]:
    """Per sex, (passed, count) candidates: those who pass score 90, the others 10; ``below``
    more candidates of unknown sex score 10, to put the sample's median under 90."""
    records = [AuditRecord(f"{sex}{i}", 90.0 if i < n else 10.0, sex, W)
               for sex, (n, count) in passed.items() for i in range(count)]
    return records + [AuditRecord(f"u{i}", 10.0, None, W) for i in range(below)]


def test_an_impact_ratio_of_exactly_four_fifths_is_not_flagged():
    # 2/3 over 5/6 is 4/5, but (2/3) / (5/6) is 0.7999999999999999 in floating point.
    # 15 candidates, 7 of them at 90: the median is 10 and exactly the 90s are above it.
    result = run_audit(sex_split({"female": (2, 3), "male": (5, 6)}, below=6), role="generic")
    female = rows(result, "sex")["female"]
    assert result.median == 10.0 and (female["passed"], rows(result, "sex")["male"]["passed"]) == (2, 5)
    assert female["impact_ratio"] == pytest.approx(0.8) and not female["four_fifths"]
    assert ("sex", "female") not in flagged(result)


def test_an_impact_ratio_just_below_four_fifths_is_flagged():
    # 399/500 over 1 is 0.798: less than four-fifths, although it prints as 0.798 and rounds to 0.8.
    result = run_audit(sex_split({"female": (399, 500), "male": (50, 50)}), role="generic",
                       mode="selection_rate", threshold=50)
    female = rows(result, "sex")["female"]
    assert female["impact_ratio"] == pytest.approx(0.798) and female["four_fifths"]
    (flag,) = [f for f in result.flags if f["code"] == "four_fifths" and f["dimension"] == "sex"]
    assert flag["category"] == "female" and "0.798, below 0.8" in flag["message"]


def test_min_share_excludes_small_categories_from_ratios_and_from_the_highest_rate():
    # At 10 %, the one-person intersections (5 %) drop out; male/Asian at exactly 10 % stays.
    result = run_audit(hand_sample(), role="generic", min_share=0.10)
    both = rows(result, "intersectional")
    for category in ("female / White", "male / Black or African American"):
        assert both[category]["excluded"] and both[category]["impact_ratio"] is None
        assert not both[category]["four_fifths"]
        assert "1 of 20 (5.0%), under the 10% minimum share" == both[category]["exclusion_reason"]
    assert not both["male / Asian"]["excluded"] and both["male / Asian"]["impact_ratio"] == 1.0


def test_default_two_percent_exclusion_keeps_a_tiny_top_group_from_setting_the_bar():
    # 100 candidates: one Native Hawaiian (1 %) scores the top; two Native Americans (2 %) stay in.
    records = [AuditRecord("top", 99.0, "male", "Native Hawaiian or Pacific Islander")]
    records += [AuditRecord(f"na{i}", 90.0 - i, "female", "Native American or Alaska Native") for i in range(2)]
    records += [AuditRecord(f"w{i}", float(i), "male" if i % 2 else "female", W) for i in range(97)]
    result = run_audit(records, role="generic")
    race = rows(result, "race_ethnicity")
    tiny = race["Native Hawaiian or Pacific Islander"]
    assert tiny["excluded"] and tiny["rate"] == 1.0 and tiny["impact_ratio"] is None
    assert "under the 2% minimum share" in tiny["exclusion_reason"]
    assert not race["Native American or Alaska Native"]["excluded"]
    assert result.dimensions["race_ethnicity"].highest_rate == 1.0  # set by the 2 % group, not the 1 % one
    # median of 0..96, 89, 90, 99 is 49.5: White 50..96 -> 47 of 97 above it.
    assert result.median == 49.5 and race[W]["passed"] == 47
    assert race[W]["impact_ratio"] == pytest.approx(47 / 97)


def test_all_rates_zero_leave_ratios_undefined_and_say_so():
    records = [AuditRecord(f"iv{i}", 50.0, ("female", "male")[i % 2], W) for i in range(10)]
    result = run_audit(records, role="generic")
    assert result.median == 50.0  # nobody is strictly above a median everyone shares
    assert all(c["rate"] == 0 and c["impact_ratio"] is None for c in rows(result, "sex").values() if c["count"])
    assert {f["dimension"] for f in result.flags if f["code"] == "no_positive_rate"} == set(result.dimensions)
    assert not flagged(result)


def test_unknown_demographics_only():
    records = [AuditRecord(f"iv{i}", float(i), None, None) for i in range(5)]
    result = run_audit(records, role="generic")
    assert all(d.unknown == 5 and d.highest_rate is None for d in result.dimensions.values())
    assert [f["code"] for f in result.flags] == ["no_category_kept"] * 3


@pytest.mark.parametrize(("records", "options", "message"), [
    ([], {}, "the sample is empty"),
    ([AuditRecord("a", 1.0, None, None)], {"mode": "selection_rate"}, "needs a threshold"),
    ([AuditRecord("a", 1.0, None, None)], {"threshold": 3.0}, "applies only to the selection_rate"),
    ([AuditRecord("a", 1.0, None, None)], {"mode": "bogus"}, "mode must be one of"),
    ([AuditRecord("a", 1.0, None, None)], {"min_share": 1.0}, "min_share"),
    ([AuditRecord("a", 1.0, None, None)] * 2, {}, "appears twice"),
    ([AuditRecord("a", float("nan"), None, None)], {}, "not a finite number"),
    ([AuditRecord("a", 1.0, "Female", None)], {}, "sex 'Female'"),
])
def test_refusals(records, options, message):
    with pytest.raises(AuditError, match=message):
        run_audit(records, role="generic", **options)


def test_categories_are_matched_case_insensitively_and_declining_is_unknown():
    assert normalise_category("sex", " FEMALE ") == "female"
    assert normalise_category("race_ethnicity", "black or  african american") == B
    assert normalise_category("race_ethnicity", "Decline") is None
    assert normalise_category("sex", "unknown") is None and normalise_category("sex", None) is None
    with pytest.raises(AuditError, match="'female', 'male'"):
        normalise_category("sex", "other")


def test_subject_score_is_a_competency_or_the_mean_of_the_scored_ones():
    card = {"competencies": [
        {"name": "clarity", "score": 60.0, "status": "scored"},
        {"name": "empathy", "score": 80.0, "status": "scored"},
        {"name": "teamwork", "score": None, "status": "insufficient_evidence"},
    ]}
    assert subject_score(card, None) == 70.0 and subject_score(card, "overall") == 70.0
    assert subject_score(card, "empathy") == 80.0
    assert subject_score(card, "teamwork") is None and subject_score({"competencies": []}, None) is None


def test_json_is_stable_and_serialisable():
    data = json.loads(render(run_audit(hand_sample(), role="generic", data_source="src"), "json"))
    assert set(data) >= {"audit_date", "data_source", "role", "competency", "mode", "sample_size", "unscored",
                         "median", "threshold", "min_share", "four_fifths_ratio", "dimensions", "flags"}
    assert list(data["dimensions"]) == ["sex", "race_ethnicity", "intersectional"]
    assert len(data["dimensions"]["intersectional"]["categories"]) == 2 * len(RACE_ETHNICITY)
    assert set(data["dimensions"]["sex"]["categories"][0]) == {
        "category", "count", "share", "passed", "rate", "impact_ratio", "four_fifths", "excluded", "exclusion_reason"}


def test_markdown_has_the_tables_the_method_and_the_flags():
    text = to_markdown(run_audit(hand_sample(), role="generic", data_source="ATS export", min_share=0.1))
    assert "- **Median score:** 10.50" in text and "- **Data source:** ATS export" in text
    assert "| **female** | **8** | **40.0%** | **3** | **0.375** | **0.750** | " in text
    assert "| male | 10 | 50.0% | 5 | 0.500 | 1.000 |  |" in text
    assert "| Black or African American | 5 | 25.0% | 1 | 0.200 | 0.333 |" not in text  # flagged rows are bold
    assert "**Black or African American**" in text
    assert "excluded: 1 of 20 (5.0%), under the 10% minimum share" in text
    assert "Unknown category: 2" in text and "Unknown category: 1" in text
    assert "strictly above the median" in text and "four-fifths" in text.lower() and "under 10%" in text
    assert "sex: female has an impact ratio of 0.750" in text


def test_html_is_standalone_escaped_and_marks_flagged_and_excluded_rows():
    page = to_html(run_audit(hand_sample(), role="<script>alert(1)</script>", data_source="a & b", min_share=0.1))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &amp; b" in page
    assert page.count('<tr class="flagged">') == len([f for f in run_audit(
        hand_sample(), role="r", min_share=0.1).flags if f["code"] == "four_fifths"])
    assert '<tr class="excluded"><td>female / White</td>' in page
    assert "Selection rate" not in page and "Scoring rate" in page


def synthetic_audit(disparity: dict[str, float] | None, seed: int = 7, scored: bool = False):
    """Audit of a synthetic set, overall: its generating (true) scores, or with ``scored`` the
    scores fusion computes from its signals with the framework's norms (the disparity is in the
    measurements, so both carry it)."""
    from poise_fusion.audit import subject_score
    from poise_fusion.framework import get_framework
    from poise_fusion.synthetic import generate

    synthetic = generate(get_framework("generic"), 3000, disparity=disparity, seed=seed)
    if scored:
        scores = [subject_score(card, None) for card in synthetic.scorecards()]
    else:
        scores = [sum(i.true_scores.values()) / len(i.true_scores) for i in synthetic.interviews]
    records = [AuditRecord(i.interview_id, score, i.sex, i.race_ethnicity)
               for i, score in zip(synthetic.interviews, scores)]
    return run_audit(records, role="generic", data_source="synthetic")


def test_an_injected_disparity_is_flagged_for_its_group_only():
    # The overall true score's spread is about 3.6 points, so a 3-point shift is large but not total.
    race = synthetic_audit({"race_ethnicity=Black or African American": -3})
    assert {(d, c) for d, c in flagged(race) if d != "intersectional"} == {("race_ethnicity", B)}
    assert rows(race, "race_ethnicity")[B]["impact_ratio"] < 0.6
    assert rows(race, "race_ethnicity")[B]["count"] > 250  # a big group, not a fluke of a small one
    sex = synthetic_audit({"sex=female": -3})
    assert {(d, c) for d, c in flagged(sex) if d != "intersectional"} == {("sex", "female")}


def test_the_disparity_survives_scoring_and_is_flagged_on_fusion_scores():
    scored = synthetic_audit({"sex=female": -3}, scored=True)
    assert {(d, c) for d, c in flagged(scored) if d != "intersectional"} == {("sex", "female")}
    assert rows(scored, "sex")["female"]["impact_ratio"] < 0.8
    fair = synthetic_audit(None, scored=True)
    assert min(c["impact_ratio"] for c in rows(fair, "sex").values()) > 0.85


def test_no_disparity_no_flag_for_sex_or_race():
    result = synthetic_audit(None)
    assert {(d, c) for d, c in flagged(result) if d != "intersectional"} == set()
    for dimension in ("sex", "race_ethnicity"):
        ratios = [c["impact_ratio"] for c in rows(result, dimension).values() if c["impact_ratio"] is not None]
        assert min(ratios) > 0.85, dimension  # clear of the 0.8 line, not just above it
    # The smallest groups fall under 2 % and are excluded rather than compared.
    assert rows(result, "race_ethnicity")["Native Hawaiian or Pacific Islander"]["excluded"]
