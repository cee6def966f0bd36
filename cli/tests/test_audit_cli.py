"""`poise audit` as a user runs it: a real process on a POISE_HOME database filled through the stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.messages import Envelope, InterviewOpened, Question
from poise_fusion.demographics import DemographicsStore
from poise_fusion.store import FusionStore

# interview -> (overall score, sex, race/ethnicity) of tenant "local", role "generic".
PEOPLE = {
    "f1": (30.0, "female", "White"), "f2": (50.0, "female", "Asian"), "f3": (90.0, "female", "White"),
    "m1": (60.0, "male", "White"), "m2": (70.0, "male", "Asian"), "m3": (80.0, "male", "White"),
    "u1": (40.0, None, None),
}


def seed(home: Path) -> None:
    engine = create_db_engine(f"sqlite:///{home / 'poise.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    fusion, demographics = FusionStore(sessions), DemographicsStore(sessions)
    rows = [(i, "local", "generic", v) for i, v in PEOPLE.items()]
    rows += [("other-tenant", "acme", "generic", (10.0, "male", "Asian")),
             ("other-role", "local", "sdr", (10.0, None, None))]
    for interview_id, tenant, role, (score, sex, race) in rows:
        fusion.apply(Envelope(
            interview_id=interview_id, tenant=tenant, stream="control", seq=0,
            payload=InterviewOpened(role=role, questions=[Question(question_id="q1", text="Why us?")]),
        ))
        document = {"interview_id": interview_id, "role": role, "answers": [],
                    "competencies": [{"name": "communication_clarity", "score": score, "status": "scored"}]}
        fusion.save_scorecard(interview_id, tenant, f"{role}@1.0+norms", document)
        demographics.put(interview_id, tenant, sex, race)
    engine.dispose()


def poise(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poise", "audit", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=120)


@pytest.fixture()
def home(poise_home: Path) -> Path:
    seed(poise_home)
    return poise_home


def test_json_from_stored_demographics(home):
    run = poise("--role", "generic")
    assert run.returncode == 0, run.stderr
    audit = json.loads(run.stdout)
    # Scores 30, 50, 90, 60, 70, 80, 40 -> median 60; above it: f3 (90), m2 (70), m3 (80).
    assert audit["sample_size"] == 7 and audit["median"] == 60.0
    sex = {c["category"]: c for c in audit["dimensions"]["sex"]["categories"]}
    assert (sex["female"]["passed"], sex["male"]["passed"]) == (1, 2)
    assert sex["female"]["impact_ratio"] == pytest.approx(0.5) and sex["female"]["four_fifths"]
    assert audit["dimensions"]["sex"]["unknown"] == 1
    assert {(f["dimension"], f["category"]) for f in audit["flags"]} >= {("sex", "female")}


def test_markdown_to_a_file_in_selection_mode(home, tmp_path):
    out = tmp_path / "audit.md"
    run = poise("--role", "generic", "--mode", "selection-rate", "--threshold", "60", "--format", "markdown",
                "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    text = out.read_text()
    # At or above 60: f3 | m1, m2, m3 -> female 1/3, male 3/3.
    assert "- **Selection threshold:** 60.00" in text
    assert "| male | 3 | 42.9% | 3 | 1.000 | 1.000 |  |" in text
    assert "| **female** | **3** | **42.9%** | **1** | **0.333** | **0.333** |" in text


def test_a_csv_replaces_the_stored_demographics(home, tmp_path):
    csv_file = tmp_path / "demo.csv"
    csv_file.write_text("interview_id,sex,race_ethnicity\nf1,male,white\nf3,MALE,Asian\nu1,female,\n"
                        "gone,female,Asian\n")
    run = poise("--role", "generic", "--demographics", str(csv_file))
    assert run.returncode == 0, run.stderr
    audit = json.loads(run.stdout)
    sex = {c["category"]: c for c in audit["dimensions"]["sex"]["categories"]}
    # Only the file counts: f1, f3 male; u1 female; everyone else unknown.
    assert (sex["male"]["count"], sex["female"]["count"]) == (2, 1)
    assert audit["dimensions"]["sex"]["unknown"] == 4 and "from demo.csv" in audit["data_source"]
    assert "1 row(s) of demo.csv match no scored interview" in run.stderr


def test_bad_input_exits_2_with_one_line(home, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("interview_id,sex,race_ethnicity\nf1,female,White\n,male,White\nf2,robot,White\nf1,male,Asian\n")
    cases = [
        (["--demographics", str(bad)], ["row 3: no interview_id", "row 4: sex must be one of", "row 5: interview f1"]),
        (["--mode", "selection-rate"], ["needs a threshold"]),
        (["--competency", "charisma"], ["has no competency 'charisma'"]),
        (["--tenant", "nobody"], ["the sample is empty"]),
        (["--format", "pdf"], ["--format must be one of"]),
    ]
    for extra, messages in cases:
        run = poise("--role", "generic", *extra)
        assert run.returncode == 2, (extra, run.stderr)
        assert run.stdout == "" and run.stderr.count("\n") == 1 and run.stderr.startswith("poise: error: ")
        for message in messages:
            assert message in run.stderr, (extra, run.stderr)


def audit_log(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poise", "audit-log", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=120)


def test_each_run_is_an_entry_of_the_audit_log_by_the_operator(home):
    import getpass

    assert poise("--role", "generic", "--format", "markdown").returncode == 0
    assert poise("--role", "generic", "--competency", "communication_clarity").returncode == 0
    exported = audit_log("export", "--action", "audit.run")
    assert exported.returncode == 0, exported.stderr
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [(e["tenant"], e["actor"], e["detail"]["format"], e["detail"]["competency"]) for e in entries] == [
        ("local", f"cli:{getpass.getuser()}", "markdown", None),
        ("local", f"cli:{getpass.getuser()}", "json", "communication_clarity"),
    ]
    verified = audit_log("verify")
    assert verified.returncode == 0, verified.stderr


def test_no_report_when_the_audit_log_cannot_be_written(home):
    import sqlite3

    with sqlite3.connect(home / "poise.db") as conn:  # the log's table refuses every new entry
        conn.execute("CREATE TRIGGER no_entries BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'no'); END")
    run = poise("--role", "generic")
    assert run.returncode == 1
    assert run.stdout == "" and run.stderr.startswith("poise: error: the audit log cannot be written")
