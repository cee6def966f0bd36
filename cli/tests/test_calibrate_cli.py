"""`poise calibrate` and `poise scoring-models` end to end, in subprocesses, on a SQLite database of synthetic scorecards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.db.models import Interview, Scorecard
from poise_fusion.calibration import MIN_BLIND, gate_rule
from poise_fusion.framework import get_framework
from poise_fusion.scoring_model import ModelStore
from poise_fusion.synthetic import generate

LOCAL = 600  # a quarter blind: about 150, enough for every blind r's interval to clear 0.6 on this data


@pytest.fixture()
def home(tmp_path):
    """POISE_HOME with LOCAL scored synthetic interviews of tenant local (and 5 of another tenant) and their ratings."""
    home = tmp_path / "home"
    synthetic = generate(get_framework("generic"), LOCAL + 5, seed=21)
    engine = create_db_engine(f"sqlite:///{home / 'poise.db'}")
    upgrade(engine)
    with session_factory(engine).begin() as session:
        for index, card in enumerate(synthetic.scorecards()):
            tenant = "local" if index < LOCAL else "other"
            session.add(Interview(id=card["interview_id"], tenant=tenant, role="generic", status="scored",
                                  answer_count=1, questions=[{"question_id": "q1", "text": ""}]))
            session.flush()
            session.add(Scorecard(interview_id=card["interview_id"], tenant=tenant,
                                  model_version=card["model_version"], document=card))
        session.add(Interview(id="pending", tenant="local", role="generic", status="processing", answer_count=1))
    engine.dispose()
    synthetic.interviews = synthetic.interviews[:LOCAL]
    synthetic.write_labels_csv(tmp_path / "ratings.csv")
    return home


def poise(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "POISE_HOME": str(home)}
    env.pop("POISE_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "poise", *args], env=env, capture_output=True, text=True, timeout=300)


def listed(home, *options: str) -> dict[str, str]:
    """Version -> state of the models ``scoring-models list`` shows."""
    result = poise(home, "scoring-models", "list", "--role", "generic", *options)
    assert result.returncode == 0, result.stderr
    return {line.split()[0]: line.split("  ")[1] for line in result.stdout.splitlines()}


def test_calibrate_saves_and_activates_a_model_above_the_bar(home):
    labels = str(home.parent / "ratings.csv")
    result = poise(home, "calibrate", "--labels", labels, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["version"] == "generic@1.0+cal.1" and report["active"] is True and report["forced"] is False
    assert report["failing"] == [] and report["tenant"] == "local" and report["interviews_of"] == "local"
    assert report["n_rated_interviews"] == LOCAL
    assert report["gate"] == {"rule": gate_rule(0.6), "bar": 0.6, "min_blind": MIN_BLIND}
    assert list(report["face_methods"]) == ["unrecorded"]  # synthetic scorecards name no face method
    for name, figures in report["competencies"].items():
        assert figures["status"] == "calibrated", name
        assert figures["blind"]["pearson"]["ci"][0] >= 0.6 and figures["verdict"]["passes"]
        assert figures["n_train"] + figures["n_blind"] == LOCAL
        assert figures["agreement"]["raters"] == 3 and 0 < figures["agreement"]["icc2_1"] < figures["agreement"]["icc2_k"]
        assert figures["norms_blind"]["n"] == figures["blind"]["n"]
    assert listed(home) == {"generic@1.0+cal.1": "active"}

    table = poise(home, "calibrate", "--labels", labels, "--seed", "3")
    assert table.returncode == 0, table.stderr
    assert "generic@1.0+cal.2 for tenant local: active; bar 0.6" in table.stdout
    assert "communication_clarity" in table.stdout and "norms r" in table.stdout
    assert f"gate: {gate_rule(0.6)}" in table.stdout
    assert "  teamwork: passes: blind r " in table.stdout and "lower end at or above 0.6" in table.stdout
    assert listed(home) == {"generic@1.0+cal.1": "inactive", "generic@1.0+cal.2": "active"}


def test_a_model_below_the_bar_is_saved_but_not_activated_unless_forced(home):
    labels = str(home.parent / "ratings.csv")
    assert poise(home, "calibrate", "--labels", labels, "--json").returncode == 0
    below = poise(home, "calibrate", "--labels", labels, "--bar", "0.99", "--json")
    assert below.returncode == 1
    assert "generic@1.0+cal.2 saved but not activated" in below.stderr and "teamwork" in below.stderr
    refused_report = json.loads(below.stdout)
    assert refused_report["active"] is False
    assert refused_report["competencies"]["teamwork"]["verdict"]["reason"].endswith("lower end below 0.99")
    assert listed(home) == {"generic@1.0+cal.1": "active", "generic@1.0+cal.2": "inactive"}

    refused = poise(home, "scoring-models", "activate", "generic@1.0+cal.2", "--bar", "0.99")
    assert refused.returncode == 1 and "not activated" in refused.stderr
    assert gate_rule(0.99) in refused.stderr and "  teamwork: blind r " in refused.stderr
    assert listed(home)["generic@1.0+cal.1"] == "active"
    forced = poise(home, "scoring-models", "activate", "generic@1.0+cal.2", "--bar", "0.99", "--force")
    assert forced.returncode == 0 and "forced" in forced.stdout
    assert listed(home) == {"generic@1.0+cal.1": "inactive", "generic@1.0+cal.2": "active, forced"}

    forced_at_calibration = poise(home, "calibrate", "--labels", labels, "--bar", "0.99", "--force", "--json")
    assert forced_at_calibration.returncode == 0
    assert json.loads(forced_at_calibration.stdout)["forced"] is True
    assert listed(home)["generic@1.0+cal.3"] == "active, forced"

    back = poise(home, "scoring-models", "deactivate", "--role", "generic")
    assert back.returncode == 0 and "generic@1.0+cal.3" in back.stdout
    assert set(listed(home).values()) == {"inactive"}
    assert poise(home, "scoring-models", "activate", "generic@1.0+cal.9").returncode == 2


def test_a_model_belongs_to_the_tenant_it_was_calibrated_for(home):
    labels = str(home.parent / "ratings.csv")
    calibrated = poise(home, "calibrate", "--labels", labels, "--tenant", "local", "--json")
    assert calibrated.returncode == 0, calibrated.stderr
    assert listed(home) == {"generic@1.0+cal.1": "active"}  # POISE_TENANT is local
    assert listed(home, "--tenant", "other") == {}
    everyone = poise(home, "scoring-models", "list", "--all-tenants")
    assert everyone.returncode == 0 and "generic@1.0+cal.1  active  tenant local  " in everyone.stdout

    engine = create_db_engine(f"sqlite:///{home / 'poise.db'}")
    store = ModelStore(session_factory(engine), cache_s=0)
    framework = get_framework("generic")
    assert store.active("local", framework).version == "generic@1.0+cal.1"
    assert store.active("other", framework) is None  # other's candidates keep the framework's norms

    # Another tenant can neither use nor switch off local's model.
    foreign = poise(home, "scoring-models", "activate", "generic@1.0+cal.1", "--tenant", "other")
    assert foreign.returncode == 2 and "no scoring model generic@1.0+cal.1 of tenant other" in foreign.stderr
    untouched = poise(home, "scoring-models", "deactivate", "--role", "generic", "--tenant", "other")
    assert untouched.returncode == 0 and "already uses its norms for tenant other" in untouched.stdout
    assert store.active("local", framework).version == "generic@1.0+cal.1"
    assert store.active("other", framework) is None
    engine.dispose()


def test_bad_labels_exit_2_naming_every_row(home):
    bad = home.parent / "bad.csv"
    lines = (home.parent / "ratings.csv").read_text().splitlines()
    first = lines[1].split(",")
    lines += [
        f"{first[0]},{first[1]},3,3,3,3,3,3",  # row 1802: the first row again
        "pending,r1,3,3,3,3,3,3",  # row 1803
        "syn-21-00601,r1,3,3,3,3,3,3",  # row 1804: another tenant's interview
        f"{first[0]},r9,3,three,3,3,3,6",  # row 1805
    ]
    bad.write_text("\n".join(lines) + "\n")
    result = poise(home, "calibrate", "--labels", str(bad))
    assert result.returncode == 2
    assert "bad.csv: 5 problem(s)" in result.stderr
    assert f"row 1802: duplicate rating of interview {first[0]} by rater r1 (first on row 2)" in result.stderr
    assert "row 1803: interview pending is not scored (status processing)" in result.stderr
    assert "row 1804: interview syn-21-00601 is not in the store for tenant local" in result.stderr
    assert "row 1805: confidence: 'three' is not a number" in result.stderr
    assert "row 1805: structured_thinking: 6 is outside the scale 1-5" in result.stderr
    assert listed(home) == {}
    assert poise(home, "calibrate", "--labels", str(bad), "--scale", "5-1").returncode == 2


def test_a_report_whose_answers_were_measured_in_different_ways_says_so():
    import io

    from rich.console import Console

    from poise.calibrate_cmd import render_report

    report = {"version": "generic@1.0+cal.1", "holdout": 0.2, "seed": 7, "competencies": {},
              "face_methods": {"a/span-32": 40, "unrecorded": 12}}
    out = io.StringIO()
    render_report(report, Console(file=out, width=200))
    assert "measured in different ways: a/span-32 (40 answers), unrecorded (12 answers)" in out.getvalue()
    out = io.StringIO()
    render_report({**report, "face_methods": {"a/span-32": 40}}, Console(file=out, width=200))
    assert "different ways" not in out.getvalue()
