"""Distributed mode: every service its own process on a real Kafka broker and PostgreSQL.

The stack is started by the test harness on 127.0.0.1 (poise_devstack) and stopped by PID.
Scorecards must equal the embedded run's on the same input, whatever crashes in between.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from poise_devstack.stack import PoiseStack

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"
QUESTION = "Tell us about a time you asked people to commit to something bigger than themselves."


def new_stack(kafka_broker, postgres, tmp_path: Path, **env) -> PoiseStack:
    """A stack with its own topics (prefix), its own database and an API key for tenant acme."""
    tag = uuid.uuid4().hex[:8]
    stack = PoiseStack(
        bus_url=f"kafka://{kafka_broker.bootstrap}?partitions=4&prefix=t{tag}.",
        database_url=postgres.create_database(f"poise_{tag}"),
        home=tmp_path / "home",
        log_dir=tmp_path / "logs",
        env={k: str(v) for k, v in env.items()},
    )
    stack.key = create_key(stack.database_url, "acme", "interviews:write,scores:read")
    return stack


def create_key(database_url: str, tenant: str, scopes: str) -> str:
    """An API key made the way an operator makes one: `poise keys create`."""
    result = subprocess.run(
        [sys.executable, "-m", "poise", "keys", "create", "--tenant", tenant, "--scopes", scopes, "--db", database_url],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def auth(stack: PoiseStack) -> dict:
    return {"Authorization": f"Bearer {stack.key}"}


def upload(stack: PoiseStack, media: list[Path], questions: list[str] | None = None, complete: bool = True) -> str:
    questions = questions or [QUESTION] * len(media)
    gateway = stack.url("gateway")
    body = {"role": "generic", "questions": [{"question_id": f"q{i + 1}", "text": q} for i, q in enumerate(questions)]}
    created = httpx.post(f"{gateway}/v1/interviews", json=body, timeout=30, headers=auth(stack))
    assert created.status_code == 201, created.text
    interview_id = created.json()["interview_id"]
    for i, path in enumerate(media):
        with path.open("rb") as fh:
            put = httpx.put(
                f"{gateway}/v1/interviews/{interview_id}/answers/q{i + 1}", content=fh, timeout=120, headers=auth(stack)
            )
        assert put.status_code == 200, put.text
    if complete:
        complete_interview(stack, interview_id)
    return interview_id


def complete_interview(stack: PoiseStack, interview_id: str) -> None:
    done = httpx.post(
        f"{stack.url('gateway')}/v1/interviews/{interview_id}/complete", timeout=300, headers=auth(stack)
    )
    assert done.status_code == 202, done.text


def wait_scorecard(stack: PoiseStack, interview_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    url = f"{stack.url('fusion')}/v1/interviews/{interview_id}/scorecard"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=10, headers=auth(stack))
            if response.status_code == 200:
                return response.json()
            # 503: fusion is restarting (a transient answer by definition); anything else is a failure.
            assert response.status_code in (202, 404, 503), response.text
        except httpx.TransportError:
            pass  # fusion may be restarting
        time.sleep(0.5)
    logs = "\n".join(f"--- {n}\n{stack.log_tail(n, 30)}" for n in stack.processes)
    raise AssertionError(f"no scorecard for {interview_id} within {timeout} s\n{logs}")


def embedded_scorecard(media: list[Path], tmp_path: Path, questions: list[str] | None = None) -> dict:
    questions = questions or [QUESTION] * len(media)
    tmp_path.mkdir(parents=True, exist_ok=True)
    qfile = tmp_path / "questions.json"
    qfile.write_text(json.dumps(questions))
    env = {**os.environ, "POISE_HOME": str(tmp_path / "embedded")}
    result = subprocess.run(
        [sys.executable, "-m", "poise", "score", *map(str, media), "--questions", str(qfile), "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def scores(card: dict) -> dict:
    return {c["name"]: c["score"] for c in card["competencies"]}


def answer_signals(card: dict) -> list:
    return [a["signals"] for a in card["answers"]]


def frame_rows(stack: PoiseStack) -> dict[str, tuple[int, int]]:
    """Per answer: stored vision frames and distinct frame seqs (a duplicate would differ)."""
    engine = create_engine(stack.database_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "select answer_id, count(*), count(distinct seq) from vision_frames group by answer_id"
        )).all()
    engine.dispose()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    return embedded_scorecard([SAMPLE], tmp_path_factory.mktemp("embedded"))


def test_upload_through_the_gateway_gives_the_embedded_scorecard(kafka_broker, postgres, tmp_path, reference):
    with new_stack(kafka_broker, postgres, tmp_path) as stack:
        stack.start_all()
        interview_id = upload(stack, [SAMPLE])
        card = wait_scorecard(stack, interview_id)
        assert card["interview_id"] == interview_id and card["tenant"] == "acme"
        # Another tenant's key finds no such interview; no key is refused.
        other = create_key(stack.database_url, "globex", "scores:read")
        url = f"{stack.url('fusion')}/v1/interviews/{interview_id}/scorecard"
        assert httpx.get(url, headers={"Authorization": f"Bearer {other}"}, timeout=10).status_code == 404
        assert httpx.get(url, timeout=10).status_code == 401
        assert scores(card) == scores(reference)
        assert answer_signals(card) == answer_signals(reference)
        assert stack.metric("vision", "poise_vision_messages_consumed_total", topic="media.frames", outcome="ok") > 100
        # Fusion got vision's features in batches: one message per 50 frames and the end, not one per frame.
        frames = sum(a["signals"]["vision"]["frames_analysed"] for a in card["answers"])
        assert frames > 100
        batches = stack.metric("fusion", "poise_fusion_messages_consumed_total", topic="features.vision", outcome="ok")
        assert batches == sum(-(-a["signals"]["vision"]["frames_analysed"] // 50) + 1 for a in card["answers"])


@pytest.fixture(scope="module")
def long_answer() -> Path:
    """79 s of real face and speech (bench/long_answer.py), so crashes land mid-answer."""
    sys.path.insert(0, str(REPO / "bench"))
    from long_answer import build_long_answer

    return build_long_answer(4)


def test_greenhouse_flow_on_the_distributed_stack(kafka_broker, postgres, tmp_path):
    """Greenhouse orders through the gateway; fusion scores and sends the callback; links use public_url."""
    from greenhouse_flow import (
        PRIVATE_TARGETS, Deployment, assert_no_candidate_data, greenhouse_stand_in, run_greenhouse_flow,
    )

    public = "https://poise.example.test"
    with greenhouse_stand_in() as callback, new_stack(kafka_broker, postgres, tmp_path, POISE_PUBLIC_URL=public,
                                                      **PRIVATE_TARGETS) as stack:
        stack.start_all()
        other = create_key(stack.database_url, "globex", "interviews:write,scores:read")
        deployment = Deployment(stack.url("gateway"), stack.url("fusion"), public, stack.key, other)
        run_greenhouse_flow(deployment, callback)
    assert_no_candidate_data("".join(stack.log_tail(name, 100000) for name in stack.processes))


def test_workers_killed_mid_answer_recover_without_duplicates(kafka_broker, postgres, tmp_path, long_answer):
    reference = embedded_scorecard([long_answer], tmp_path / "ref")
    with new_stack(kafka_broker, postgres, tmp_path) as stack:
        stack.start_all()
        interview_id = upload(stack, [long_answer], complete=False)
        publisher = threading.Thread(target=complete_interview, args=(stack, interview_id))
        publisher.start()

        def vision_frames() -> float:
            return stack.metric("vision", "poise_vision_messages_consumed_total", topic="media.frames")

        def audio_state() -> tuple[float, float]:
            chunks = stack.metric("audio", "poise_audio_messages_consumed_total", topic="media.audio")
            done = stack.metric("audio", "poise_audio_messages_published_total", topic="transcripts")
            return chunks, done

        # Vision first: killed with part of the answer's frames handled, none of its end.
        wait_until(lambda: vision_frames() >= 20, "vision handled 20 frames")
        handled = vision_frames()
        stack.kill("vision")
        assert 20 <= handled < 700, handled
        # Then audio, while it holds the open answer: chunks received, no transcript out yet.
        wait_until(lambda: audio_state()[0] >= 1, "audio received a chunk")
        chunks, transcripts = audio_state()
        stack.kill("audio")
        assert chunks >= 1 and transcripts == 0, (chunks, transcripts)
        publisher.join()
        stack.start("vision")
        stack.start("audio")
        card = wait_scorecard(stack, interview_id)
        assert scores(card) == scores(reference)
        assert answer_signals(card) == answer_signals(reference)
        [(rows, distinct)] = frame_rows(stack).values()
        assert rows == distinct == card["answers"][0]["media"]["frame_count"]


def wait_until(check, what: str, timeout: float = 120, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting until {what}")


def test_broker_stopped_and_restarted_mid_run(kafka_broker, postgres, tmp_path, reference):
    with new_stack(kafka_broker, postgres, tmp_path) as stack:
        stack.start_all()
        interview_id = upload(stack, [SAMPLE])
        wait_metric(stack, "vision", "poise_vision_messages_consumed_total", 30, topic="media.frames")
        kafka_broker.stop()
        time.sleep(3)
        kafka_broker.start()
        card = wait_scorecard(stack, interview_id, timeout=400)
        assert scores(card) == scores(reference)


def test_poison_message_goes_to_dead_letter_and_the_partition_keeps_flowing(kafka_broker, postgres, tmp_path):
    import asyncio

    from poise_common.bus import create_bus

    with new_stack(kafka_broker, postgres, tmp_path) as stack:
        stack.start_all()
        interview_id = upload(stack, [SAMPLE])
        wait_scorecard(stack, interview_id)

        async def poison_then_read() -> list[dict]:
            bus = create_bus(stack.bus_url)
            await bus.start()
            # Same key as the interview: same partition, so the later upload must flow past it.
            await bus.publish_raw("media.frames", interview_id, b"{not an envelope")
            for _ in range(300):
                records = [json.loads(r) for r in await bus.read_all("dlq.vision")]
                if records:
                    break
                await asyncio.sleep(0.2)
            await bus.stop()
            return records

        dead = asyncio.run(poison_then_read())
        assert len(dead) == 1 and dead[0]["attempts"] == 0 and "not an envelope" in dead[0]["value"]
        second = upload(stack, [SAMPLE])
        assert wait_scorecard(stack, second)["interview_id"] == second


def test_two_vision_workers_share_the_partitions(kafka_broker, postgres, tmp_path, media_dir):
    clip = media_dir / "single_face.mp4"
    with new_stack(kafka_broker, postgres, tmp_path) as stack:
        stack.start_all()
        stack.start("vision-2")
        interviews: list[str] = []

        def consumed(worker: str) -> float:
            return stack.metric(worker, "poise_vision_messages_consumed_total", topic="media.frames", outcome="ok")

        # Interview ids are random, so their partitions are: keep uploading until both workers
        # have had work (each upload lands on either worker's partitions with even odds).
        while len(interviews) < 12 and not (interviews and consumed("vision") and consumed("vision-2")):
            interviews.append(upload(stack, [clip]))
            wait_scorecard(stack, interviews[-1])
        cards = [wait_scorecard(stack, i) for i in interviews]
        assert len({json.dumps(scores(c), sort_keys=True) for c in cards}) == 1  # same input, same scores
        first, second = consumed("vision"), consumed("vision-2")
        assert first > 0 and second > 0, (first, second)
        frames = sum(c["answers"][0]["media"]["frame_count"] + 1 for c in cards)  # frames + end marker
        assert first + second >= frames  # every frame handled (a rebalance may replay a held answer)


def wait_metric(stack: PoiseStack, instance: str, name: str, at_least: float, timeout: float = 120, **labels) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.metric(instance, name, **labels) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"{instance}: {name} never reached {at_least}\n{stack.log_tail(instance)}")


def with_retries(call, what: str, attempts: int = 60):
    """What a real API client does when a gateway restarts under it: try again (every call is idempotent)."""
    for _ in range(attempts):
        try:
            response = call()
            if response.status_code < 500:
                return response
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"{what} kept failing")


def upload_resiliently(stack: PoiseStack, media: Path) -> str:
    gateway, headers = stack.url("gateway"), auth(stack)
    body = {"role": "generic", "questions": [{"question_id": "q1", "text": QUESTION}]}
    created = with_retries(lambda: httpx.post(f"{gateway}/v1/interviews", json=body, timeout=30, headers=headers),
                           "create")
    assert created.status_code == 201, created.text
    interview_id = created.json()["interview_id"]
    put = with_retries(lambda: httpx.put(f"{gateway}/v1/interviews/{interview_id}/answers/q1",
                                         content=media.read_bytes(), timeout=120, headers=headers), "upload")
    assert put.status_code == 200, put.text
    done = with_retries(lambda: httpx.post(f"{gateway}/v1/interviews/{interview_id}/complete", timeout=300,
                                           headers=headers), "complete")
    assert done.status_code == 202, done.text
    return interview_id


def test_random_kills_of_every_service_during_a_batch_lose_nothing(kafka_broker, postgres, tmp_path, media_dir):
    """kill -9 a random service at random moments, many times, while a batch of real interviews runs:
    every scorecard completes and equals the clean (embedded) run, with no duplicated frames."""
    import random

    clips = [SAMPLE, media_dir / "single_face.mp4", media_dir / "talking_head_2.mp4"]
    references = {clip: embedded_scorecard([clip], tmp_path / f"ref-{clip.stem}") for clip in clips}
    batch = clips * 2
    chaos = random.Random(20261126)  # seeded: a failure can be replayed
    kills: list[str] = []
    finished = threading.Event()
    with new_stack(kafka_broker, postgres, tmp_path) as stack:
        stack.start_all()

        def monkey() -> None:
            # Keep killing while the batch runs, and at least 15 times in all; every service in
            # each round of five, in a random order, at random moments.
            victims: list[str] = []
            while (not finished.is_set() or len(kills) < 15) and len(kills) < 30:
                time.sleep(chaos.uniform(0.5, 4.0))
                if not victims:
                    victims = chaos.sample(["gateway", "vision", "audio", "nlp", "fusion"], 5)
                victim = victims.pop()
                stack.kill(victim)
                kills.append(victim)
                time.sleep(chaos.uniform(0.0, 1.5))
                stack.start(victim)

        killer = threading.Thread(target=monkey)
        killer.start()
        try:
            interviews = [(upload_resiliently(stack, clip), clip) for clip in batch]
            cards = [(wait_scorecard(stack, interview_id, timeout=900), clip) for interview_id, clip in interviews]
        finally:
            finished.set()
            killer.join()
        print(f"fault injection: {len(kills)} kills survived ({', '.join(kills)}); "
              f"{len(cards)}/{len(batch)} interviews scored")
        assert len(kills) >= 15 and set(kills) == {"gateway", "vision", "audio", "nlp", "fusion"}
        for card, clip in cards:
            assert scores(card) == scores(references[clip]), clip.name
            assert answer_signals(card) == answer_signals(references[clip]), clip.name
        rows = frame_rows(stack)
        for card, _ in cards:
            answer = card["answers"][0]
            assert rows[answer["answer_id"]] == (answer["media"]["frame_count"],) * 2
