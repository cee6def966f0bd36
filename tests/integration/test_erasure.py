"""Erasure leaves nothing: a real interview through `poise serve`, then a search of the database
file, POISE_HOME and the temporary folder for the candidate's data; gRPC EraseCandidate and the
retention purge as an operator runs it."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from pathlib import Path

import grpc
import httpx

from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from poise_common.grpc_api.poise.v1 import scoring_pb2_grpc as pb_grpc
from serve_process import poise_cli, serve

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"
QUESTIONS = [{"question_id": "q1", "text": "Why this role?"}]
# Where the interview id may stay: the tombstone that drops late messages, and the audit log.
ID_MAY_STAY_IN = {"failures", "audit_events"}


def create(base: str, headers: dict, ref: str) -> str:
    body = {"role": "generic", "questions": QUESTIONS, "candidate_ref": ref}
    response = httpx.post(f"{base}/v1/interviews", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["interview_id"]


def upload(base: str, headers: dict, interview_id: str) -> None:
    with SAMPLE.open("rb") as fh:
        response = httpx.put(f"{base}/v1/interviews/{interview_id}/answers/q1", content=fh, headers=headers,
                             timeout=120)
    assert response.status_code == 200, response.text


def database_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.glob("poise.db*")))


def files_under(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name not in skip}


def tables_naming(home: Path, needle: str) -> set[str]:
    """Tables with a row in which some text column contains ``needle``."""
    found = set()
    with sqlite3.connect(f"file:{home / 'poise.db'}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]:
                hit = db.execute(f'SELECT 1 FROM "{table}" WHERE CAST("{column}" AS TEXT) LIKE ? LIMIT 1',
                                 (f"%{needle}%",)).fetchone()
                if hit:
                    found.add(table)
    return found


def test_erasure_leaves_nothing_of_the_candidate(tmp_path, monkeypatch):
    home, temp = tmp_path / "home", tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # the server's temporary folder, searched at the end
    ref, other_ref = f"cand-{uuid.uuid4().hex[:10]}", f"cand-{uuid.uuid4().hex[:10]}"
    video = SAMPLE.read_bytes()
    video_samples = [video[i : i + 48] for i in range(4096, len(video) - 48, len(video) // 9)]
    with serve(home, grpc=True) as served:
        writer = {"Authorization": "Bearer " + served.key("acme", "interviews:write,scores:read")}
        eraser = {"Authorization": "Bearer " + served.key("acme", "candidates:erase")}
        foreign = [("authorization", "Bearer " + served.key("globex", "admin"))]
        interview = create(served.base, writer, ref)
        upload(served.base, writer, interview)
        # At rest before publishing: the media folder holds no byte run of the video.
        media = b"".join(files_under(home / "media").values())
        assert all(sample not in media for sample in video_samples)
        done = httpx.post(f"{served.base}/v1/interviews/{interview}/complete", headers=writer, timeout=120)
        assert done.status_code == 202, done.text
        deadline = time.monotonic() + 240
        while (card := httpx.get(f"{served.base}/v1/interviews/{interview}/scorecard", headers=writer,
                                 timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, card.text
            time.sleep(0.5)
        said = " ".join(s["text"] for a in card.json()["answers"] for s in a["transcript"]).lower()
        spoken = re.findall(r"[a-z]+", said)
        # Its longer words, and every run of three words: what a search for the transcript would try.
        words = sorted({w for w in spoken if len(w) >= 6} | {" ".join(spoken[i : i + 3]) for i in range(len(spoken) - 2)})
        assert len(spoken) >= 10, said
        # At rest while kept: the transcript is encrypted in the database.
        stored = database_bytes(home).lower()
        assert [w for w in words if w.encode() in stored] == []

        # gRPC, another tenant: finds nothing of acme's candidate, erases nothing.
        with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
            stub = pb_grpc.ScoringServiceStub(channel)
            receipt = stub.EraseCandidate(pb.EraseCandidateRequest(candidate_ref=ref), metadata=foreign, timeout=30)
            assert receipt.interviews == 0 and receipt.status == "completed"
            assert httpx.get(f"{served.base}/v1/interviews/{interview}/scorecard", headers=writer,
                             timeout=10).status_code == 200
            # gRPC, the tenant's own: a second candidate's interview, uploaded but never completed.
            pending = create(served.base, writer, other_ref)
            upload(served.base, writer, pending)
            own = [("authorization", eraser["Authorization"])]
            receipt = stub.EraseCandidate(pb.EraseCandidateRequest(candidate_ref=other_ref), metadata=own, timeout=60)
            assert receipt.interviews == 1 and receipt.removed["media_files"] == 2
            try:
                stub.EraseCandidate(pb.EraseCandidateRequest(candidate_ref=ref), metadata=[
                    ("authorization", writer["Authorization"])], timeout=30)
                raise AssertionError("a key without candidates:erase erased")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.PERMISSION_DENIED

        # REST: the scored interview.
        erased = httpx.delete(f"{served.base}/v1/candidates/{ref}", headers=eraser, timeout=60)
        assert erased.status_code == 200, erased.text
        receipt = erased.json()
        assert receipt["interviews"] == 1 and receipt["status"] == "completed"
        assert min(receipt["removed"][k] for k in ("answers", "answer_parts", "scorecards", "candidate_interviews")) >= 1
        assert receipt["completed_at"] - receipt["requested_at"] < 60
        assert httpx.get(f"{served.base}/v1/interviews/{interview}/scorecard", headers=writer,
                         timeout=10).status_code == 404

        # Nothing of it anywhere, while the server still runs.
        stored = database_bytes(home)
        assert ref.encode() not in stored and other_ref.encode() not in stored
        assert [w for w in words if w.encode() in stored.lower()] == []
        for interview_id in (interview, pending):
            assert tables_naming(home, interview_id) <= ID_MAY_STAY_IN
        # Every other file (the database was searched above, table by table).
        kept = files_under(home, skip=("serve.log", "poise.db", "poise.db-wal", "poise.db-shm"))
        assert kept, "the search found no files at all"
        for path, content in {**kept, **files_under(temp)}.items():
            for needle in (interview, pending, ref, other_ref):
                assert needle not in str(path) and needle.encode() not in content, (path, needle)
            assert all(sample not in content for sample in video_samples), path
            assert [w for w in words if w.encode() in content.lower()] == [], path
        assert all(sample not in stored for sample in video_samples)

        # Retention as an operator runs it: a tenant keeping nothing loses its open interview at once.
        left = create(served.base, writer, f"cand-{uuid.uuid4().hex[:10]}")
        poise_cli("retention", "set", "acme", "0", env=served.env)
        assert "would remove 1 expired interviews' data, 1 upload folders" in poise_cli(
            "purge", "--dry-run", env=served.env)
        assert (home / "media" / left).is_dir()
        assert "removed 1 expired interviews' data, 1 upload folders" in poise_cli("purge", env=served.env)
        assert not (home / "media" / left).exists()
        assert tables_naming(home, left) <= ID_MAY_STAY_IN
    log = (home / "serve.log").read_text()
    assert ref not in log and other_ref not in log
