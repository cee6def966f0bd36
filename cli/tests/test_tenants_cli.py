"""`poise tenants set-policy | show` and `poise score --policy`, as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

NOTICE = {
    "alternative_process_contact": "https://example.com/accommodations",
    "retention": "recordings 30 days; scorecards 12 months",
    "audit_summary_url": "https://example.com/poise-bias-audit-2025.pdf",
    "notice_version": "nyc-2025-02",
}


def poise(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "POISE_HOME": str(home)}
    env.pop("POISE_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "poise", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def show(home: Path, tenant: str) -> dict:
    done = poise(home, "tenants", "show", tenant)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("poise: error: ")
    return lines[0]


def test_set_policy_and_show_round_trip(tmp_path):
    notice = tmp_path / "notice.yaml"
    notice.write_text(yaml.safe_dump(NOTICE))
    assert show(tmp_path, "acme") == {"tenant": "acme", "policy": "default", "notice": None, "stored": False,
                                      "updated_at": None}

    refused = one_error_line(poise(tmp_path, "tenants", "set-policy", "acme", "us-nyc"))
    assert "alternative_process_contact, retention, audit_summary_url" in refused
    assert show(tmp_path, "acme")["stored"] is False

    done = poise(tmp_path, "tenants", "set-policy", "acme", "us-nyc", "--notice", str(notice))
    assert done.returncode == 0, done.stderr
    assert "us-nyc" in done.stdout
    stored = show(tmp_path, "acme")
    assert (stored["policy"], stored["notice"], stored["stored"]) == ("us-nyc", NOTICE, True)
    assert stored["updated_at"] > 0

    # Without --notice the stored notice stays; another tenant is untouched.
    assert poise(tmp_path, "tenants", "set-policy", "acme", "eu").returncode == 0
    assert (show(tmp_path, "acme")["policy"], show(tmp_path, "acme")["notice"]) == ("eu", NOTICE)
    assert show(tmp_path, "globex")["policy"] == "default"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({**NOTICE, "audit_summary_url": "example.com/audit"}, "audit_summary_url"),
        ({**NOTICE, "retension": "1 year"}, "retension"),
        (["a", "list"], "mapping"),
        (None, "cannot read"),
    ],
)
def test_a_bad_notice_file_is_one_error_line(tmp_path, content, problem):
    notice = tmp_path / "notice.yaml"
    if content is not None:
        notice.write_text(yaml.safe_dump(content))
    line = one_error_line(poise(tmp_path, "tenants", "set-policy", "acme", "us-nyc", "--notice", str(notice)))
    assert problem in line
    assert show(tmp_path, "acme")["stored"] is False


def test_unknown_profile_is_refused(tmp_path, media_dir):
    line = one_error_line(poise(tmp_path, "tenants", "set-policy", "acme", "uk"))
    assert "unknown policy 'uk'" in line and "us-il" in line
    line = one_error_line(poise(tmp_path, "score", str(media_dir / "single_face.mp4"), "--policy", "uk"))
    assert "unknown policy 'uk'" in line


def test_score_follows_the_stored_policy_and_the_one_off_override(tmp_path, media_dir):
    answer = str(media_dir / "single_face.mp4")
    notice = tmp_path / "notice.yaml"
    notice.write_text(yaml.safe_dump(NOTICE))

    # A one-off us-nyc run needs the tenant's notice; us-il needs consent, which a run from files cannot record.
    assert "alternative_process_contact" in one_error_line(poise(tmp_path, "score", answer, "--policy", "us-nyc"))
    assert poise(tmp_path, "tenants", "set-policy", "local", "us-il").returncode == 0
    assert "consent" in one_error_line(poise(tmp_path, "score", answer))

    assert poise(tmp_path, "tenants", "set-policy", "local", "us-nyc", "--notice", str(notice)).returncode == 0
    stored = poise(tmp_path, "score", answer, "--json")
    assert stored.returncode == 0, stored.stderr
    card = json.loads(stored.stdout)
    assert card["policy"] == "us-nyc"
    assert {k: card["notice"][k] for k in NOTICE} == NOTICE

    override = poise(tmp_path, "score", answer, "--json", "--policy", "eu")
    assert override.returncode == 0, override.stderr
    card = json.loads(override.stdout)
    assert card["policy"] == "eu" and card["notice"] is None
    for competency in card["competencies"]:
        assert {c["modality"] for c in competency["contributions"]} <= {"content"}
        assert all(e["kind"] != "episode" for e in competency["evidence"])
    assert show(tmp_path, "local")["policy"] == "us-nyc"  # the override changed nothing stored
