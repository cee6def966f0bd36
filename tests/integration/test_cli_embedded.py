"""`poise score` end to end, as a user runs it: a real process, real media, real models."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from media_factory import silence, write_video
from poise_common.db.engine import create_db_engine, session_factory
from poise_common.inference.faces import FACE_METHOD
from poise_common.messages import Envelope, InterviewOpened, Question
from poise_fusion.store import FusionStore

REPO = Path(__file__).resolve().parents[2]
POISE = [sys.executable, "-m", "poise"]
SAMPLE = REPO / "examples" / "sample_interview.mp4"
QUESTIONS = REPO / "examples" / "questions.yaml"


def poise(args: list, home: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    environ = {**os.environ, "POISE_HOME": str(home), **(env or {})}
    return subprocess.run(
        [*POISE, *map(str, args)], capture_output=True, text=True, env=environ, timeout=timeout, cwd=REPO
    )


def score_json(paths: list, home: Path, *extra, env: dict | None = None) -> dict:
    result = poise(["score", *paths, "--json", *extra], home, env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def interview_rows(home: Path) -> int:
    db = home / "poise.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        return sum(
            conn.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("interviews", "answers", "answer_parts", "vision_frames", "scorecards")
            if t in tables
        )


@pytest.fixture(scope="module")
def sample_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def sample_card(sample_home) -> dict:
    return score_json([SAMPLE, "--questions", QUESTIONS], sample_home)


def test_sample_scorecard_has_every_promised_field(sample_card):
    card = sample_card
    for key in ("interview_id", "role", "model_version", "competencies", "answers", "warnings"):
        assert key in card
    assert card["role"] == "generic"
    assert card["model_version"].startswith("generic@")
    names = {c["name"] for c in card["competencies"]}
    assert {"communication_clarity", "confidence", "active_listening", "empathy", "teamwork"} <= names
    answer = card["answers"][0]
    assert answer["question"].startswith("Tell us about a time")
    words = [w for seg in answer["transcript"] for w in seg["words"]]
    text = " ".join(seg["text"] for seg in answer["transcript"]).lower()
    assert "ask not what your country can do for you" in text.replace(",", "")
    assert words and all(w["start_s"] <= w["end_s"] for w in words)
    assert answer["face_method"] == f"{FACE_METHOD}/span-32"  # how the face signals were measured
    vision, audio, nlp = (answer["signals"][k] for k in ("vision", "audio", "nlp"))
    assert vision["face_presence"] > 0.9
    assert 0 <= vision["eye_contact_ratio"] <= 1
    assert vision["smile_ratio"] is not None and vision["blink_rate_per_min"] is not None
    assert 90 < audio["speech_rate_wpm"] < 220
    assert audio["pitch_mean_hz"] > 60 and audio["pitch_variation_st"] > 0
    assert audio["pause_ratio"] is not None
    assert nlp["word_count"] >= 20 and nlp["filler_rate"] is not None


def test_every_score_is_the_sum_of_its_contributions_and_has_evidence(sample_card):
    scored = [c for c in sample_card["competencies"] if c["status"] == "scored"]
    assert len(scored) >= 5
    for comp in scored:
        assert 0 <= comp["score"] <= 100
        assert comp["band"] in {"developing", "moderate", "strong", "exceptional"}
        assert abs(sum(c["points"] for c in comp["contributions"]) - comp["score"]) < 0.011
        assert comp["evidence"], comp["name"]
        for ev in comp["evidence"]:
            assert ev["kind"] in {"quote", "episode", "signal"}
            assert 0 <= ev["start_s"] <= ev["end_s"] <= 20.0
            assert ("text" in ev) or ("signal" in ev)
    quotes = [e for c in scored for e in c["evidence"] if e["kind"] == "quote"]
    transcript = " ".join(s["text"] for s in sample_card["answers"][0]["transcript"])
    assert quotes and all(q["text"] in transcript for q in quotes)


def test_a_score_is_an_entry_of_the_audit_log_by_the_operator(sample_card, sample_home):
    import getpass

    exported = poise(["audit-log", "export", "--action", "interview.scored"], sample_home)
    assert exported.returncode == 0, exported.stderr
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [(e["interview_id"], e["actor"]) for e in entries] == [
        (sample_card["interview_id"], f"cli:{getpass.getuser()}")
    ]
    assert entries[0]["detail"]["model_version"] == sample_card["model_version"]
    verified = poise(["audit-log", "verify"], sample_home)
    assert verified.returncode == 0, verified.stderr


def test_the_local_database_is_readable_by_its_owner_only(sample_card, sample_home):
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in sample_home.glob("poise.db*")}
    assert "poise.db" in files and set(files.values()) == {0o600}, files


def test_embedded_runs_keep_no_transcript_in_clear_at_rest(sample_card, tmp_path):
    """`poise score` stores the scorecard like the servers do: transcript text sealed with the tenant's key."""
    home = tmp_path / "home"
    card = score_json([SAMPLE, "--questions", QUESTIONS], home)
    words = [w for s in card["answers"][0]["transcript"] for w in s["text"].split()]
    runs = {" ".join(words[i:i + 3]) for i in range(len(words) - 2)}
    assert len(runs) > 10  # the sample really says something
    raw = b"".join(p.read_bytes() for p in home.glob("poise.db*"))
    assert not [r for r in runs if r.encode() in raw]


def test_same_video_twice_gives_the_same_scorecard(sample_card, tmp_path):
    again = score_json([SAMPLE, "--questions", QUESTIONS], tmp_path)
    strip = lambda card: {k: v for k, v in card.items() if k != "interview_id"}  # noqa: E731
    first, second = strip(sample_card), strip(again)
    for card in (first, second):
        for answer in card["answers"]:
            answer.pop("answer_id")
        for comp in card["competencies"]:
            for ev in comp["evidence"]:
                ev.pop("answer_id")
    for card in (first, second):
        for answer in card["answers"]:
            for comp in answer["competencies"]:
                for ev in comp["evidence"]:
                    ev.pop("answer_id")
    assert first == second


def test_readable_output_names_competencies(tmp_path):
    result = poise(["score", SAMPLE, "--questions", QUESTIONS], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Communication clarity" in result.stdout and "Active listening" in result.stdout
    assert interview_rows(tmp_path) > 0  # the scorecard is stored


def test_no_face_gives_null_face_signals_and_a_warning(media_dir, tmp_path):
    card = score_json([media_dir / "no_face.mp4"], tmp_path)
    vision = card["answers"][0]["signals"]["vision"]
    assert vision["face_presence"] == 0
    assert vision["eye_contact_ratio"] is None and vision["smile_ratio"] is None
    assert any("no face" in w for w in card["warnings"])


def test_silence_marks_speech_competencies_insufficient_not_zero(media_dir, tmp_path):
    # The Pexels clip has a face and an all-zero audio track.
    card = score_json([media_dir / "pexels_face_20s.mp4"], tmp_path)
    for comp in card["competencies"]:
        assert comp["score"] is None and comp["status"] == "insufficient_evidence", comp["name"]
    assert card["answers"][0]["signals"]["audio"]["speech_ratio"] == 0
    assert card["answers"][0]["signals"]["vision"]["face_presence"] > 0.9
    assert any("too little speech" in w for w in card["warnings"])


def test_two_answers_roll_up_to_one_interview(media_dir, tmp_path):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps(["Why this role?", "Tell us about a team you led."]))
    card = score_json([SAMPLE, media_dir / "talking_head_3.mp4", "--questions", questions], tmp_path / "h")
    assert [a["question_id"] for a in card["answers"]] == ["q1", "q2"]
    for comp in card["competencies"]:
        per_answer = [
            next(c for c in a["competencies"] if c["name"] == comp["name"]) for a in card["answers"]
        ]
        scored = [c["score"] for c in per_answer if c["score"] is not None]
        if scored:
            assert comp["score"] == pytest.approx(sum(scored) / len(scored), abs=0.05)


def test_role_profile_changes_the_competencies(tmp_path):
    card = score_json([SAMPLE, "--role", "sales-development-rep"], tmp_path)
    assert card["role"] == "sales-development-rep"
    assert "resilience" in {c["name"] for c in card["competencies"]}


BAD_INPUTS = {
    "random_bytes": lambda d: _write(d / "answer.mp4", os.urandom(50_000)),
    "text_file": lambda d: _write(d / "answer.mp4", b"this is not a video\n" * 100),
    "empty": lambda d: _write(d / "answer.mp4", b""),
    "truncated": lambda d: _write(d / "answer.mp4", SAMPLE.read_bytes()[:3000]),
    "no_audio_track": lambda d: write_video(d / "answer.mp4"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_clear_line_and_writes_nothing(case, tmp_path):
    bad = BAD_INPUTS[case](tmp_path)
    home = tmp_path / "home"
    result = poise(["score", bad], home)
    assert result.returncode == 2, (case, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("poise: error: answer.mp4: "), result.stderr
    assert result.stdout == ""
    assert interview_rows(home) == 0


def test_audio_only_file_is_not_a_video(media_dir, tmp_path):
    result = poise(["score", media_dir / "jfk.flac"], tmp_path)
    assert result.returncode == 2
    assert "no video track" in result.stderr


def test_missing_file(tmp_path):
    result = poise(["score", tmp_path / "nope.mp4"], tmp_path)
    assert result.returncode == 2 and "file not found" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POISE_GATEWAY__MAX_FILE_BYTES": "100000"}, "the limit is 100000 bytes"),
        ({"POISE_GATEWAY__MAX_DURATION_S": "5"}, "the limit is 5 s"),
    ],
)
def test_over_the_limits(env, message, tmp_path):
    result = poise(["score", SAMPLE], tmp_path, env)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert interview_rows(tmp_path) == 0


def test_second_answer_bad_rejects_the_whole_interview(tmp_path):
    bad = write_video(tmp_path / "second.mp4")
    result = poise(["score", SAMPLE, bad], tmp_path)
    assert result.returncode == 2 and "second.mp4: the video has no audio track" in result.stderr
    assert interview_rows(tmp_path) == 0


def test_questions_count_must_match(tmp_path):
    questions = tmp_path / "q.yaml"
    questions.write_text("- one\n- two\n")
    result = poise(["score", SAMPLE, "--questions", questions], tmp_path)
    assert result.returncode == 2 and "1 answers but 2 questions" in result.stderr


def test_unknown_role(tmp_path):
    result = poise(["score", SAMPLE, "--role", "astronaut"], tmp_path)
    assert result.returncode == 2 and "unknown role 'astronaut'" in result.stderr


def test_silent_video_without_face_made_here(tmp_path):
    path = write_video(tmp_path / "blank.mp4", seconds=3, audio=silence(3))
    card = score_json([path], tmp_path / "home")
    answer = card["answers"][0]
    assert answer["signals"]["vision"]["face_presence"] == 0
    assert answer["signals"]["audio"]["speech_ratio"] == 0
    assert all(c["score"] is None for c in card["competencies"])


def count_rows(home: Path, table: str) -> int:
    try:
        with sqlite3.connect(home / "poise.db") as conn:
            return conn.execute(f"select count(*) from {table}").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def started_scoring(home: Path, *paths) -> subprocess.Popen:
    """A `poise score` run, returned once it has stored face rows of its interview."""
    process = subprocess.Popen([*POISE, "score", *map(str, paths), "--json"], cwd=REPO, text=True,
                               env={**os.environ, "POISE_HOME": str(home)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while count_rows(home, "vision_frames") == 0:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no face rows were stored"
        time.sleep(0.2)
    return process


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_leaves_nothing_of_the_run(sig, code, said, tmp_path):
    home = tmp_path / "home"
    process = started_scoring(home, SAMPLE, SAMPLE)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == code, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f"poise: error: {said}; nothing of this run was kept"
    assert interview_rows(home) == 0


def test_a_run_removes_what_a_killed_run_left_and_nothing_else(tmp_path):
    home = tmp_path / "home"
    killed = started_scoring(home, SAMPLE, SAMPLE)
    killed.kill()  # SIGKILL: nothing of it runs any more
    killed.communicate(timeout=60)
    with sqlite3.connect(home / "poise.db") as conn:
        left = conn.execute("select id, status from interviews").fetchall()
    assert len(left) == 1 and left[0][1] == "processing" and count_rows(home, "vision_frames") > 0
    # A server sharing the database has an interview in progress: not the command's to remove.
    engine = create_db_engine(f"sqlite:///{home / 'poise.db'}")
    FusionStore(session_factory(engine)).apply(Envelope(
        interview_id=uuid.uuid4().hex, tenant="acme", stream="control", seq=0,
        payload=InterviewOpened(role="generic", questions=[Question(question_id="q1", text="Why us?")]),
    ))
    engine.dispose()

    card = score_json([SAMPLE], home)
    with sqlite3.connect(home / "poise.db") as conn:
        remaining = dict(conn.execute("select id, status from interviews").fetchall())
        orphans = conn.execute(
            "select count(*) from answers where interview_id not in (select id from interviews)").fetchone()[0]
    assert left[0][0] not in remaining
    assert sorted(remaining.values()) == ["processing", "scored"] and remaining[card["interview_id"]] == "scored"
    assert orphans == 0 and count_rows(home, "vision_frames") > 0  # the new run's own face rows
