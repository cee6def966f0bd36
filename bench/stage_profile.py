"""Where the time goes: every stage of the pipeline alone, on the long real answer.

Each stage runs by itself on the same input, so its CPU seconds (all threads of this process,
plus child processes where the stage has them) are its own. The model stages (face model, VAD,
prosody, speech recognition, NLP) add up to the floor no pipeline can go below on one core;
the others (decode, JPEG, bus, fusion) are the pipeline's overhead. Prints and saves
bench/results/stage_profile.json.

    python bench/stage_profile.py [--repeats 4]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import bench_input, clock, descendants_cpu_s, machine, now_utc, save  # noqa: E402

MODEL_STAGES = ("face_model", "vad", "prosody", "speech_recognition", "nlp")
QUESTION = "Tell us about a time you changed someone's mind."


def _sandboxed(figures: dict, stage: str, run) -> object:
    """Like ``clock``, with the CPU of the child processes the stage started added in."""
    before = descendants_cpu_s()
    with clock(figures, stage):
        result = run()
    figures[stage]["cpu_s"] = round(figures[stage]["cpu_s"] + descendants_cpu_s() - before, 3)
    return result


def measure_stages(path: Path) -> tuple[dict, dict]:
    """(figures per stage, what the stages produced: frames, observations, transcript, ...)."""
    import numpy as np

    from poise_audio.analysis import analyse_audio
    from poise_audio.asr import create_recognizer
    from poise_audio.prosody import measure_prosody
    from poise_audio.vad import detect_speech
    from poise_common.behaviour.vision_summary import summarise_vision
    from poise_common.inference.faces import FaceLandmarkerRunner, decode_jpeg_rgb
    from poise_common.settings import PoiseSettings
    from poise_gateway.decode import encode_jpeg, iter_audio, iter_frames
    from poise_gateway.probe import probe
    from poise_gateway.sandbox import isolated_audio, isolated_frames, shared_sandbox
    from poise_nlp.features import analyse_transcript
    from poise_vision.face_tracker import MainFace

    settings = PoiseSettings()
    gateway = settings.gateway
    duration = probe(path, gateway).duration_s
    figures: dict = {}
    shared_sandbox(gateway).warm_up()  # as a service does when it starts: not a cost per answer
    with clock(figures, "decode_video"):
        frames = list(iter_frames(path, gateway.sample_fps, gateway.frame_width))
    _sandboxed(figures, "decode_video_sandboxed", lambda: sum(1 for _ in isolated_frames(path, gateway, duration)))
    with clock(figures, "decode_audio"):
        pcm = b"".join(chunk for _, chunk in iter_audio(path, gateway.audio_chunk_s))
    _sandboxed(figures, "decode_audio_sandboxed", lambda: sum(1 for _ in isolated_audio(path, gateway, duration)))
    # In process for reference: the sandboxed decode above includes it (the child encodes).
    with clock(figures, "jpeg_encode"):
        jpegs = [encode_jpeg(rgb, gateway.jpeg_quality) for _, rgb in frames]
    with clock(figures, "jpeg_decode"):
        decoded = [decode_jpeg_rgb(jpeg) for jpeg in jpegs]
    runner = FaceLandmarkerRunner(settings.vision.face_model_path, settings.vision.max_faces)
    with clock(figures, "face_model"):
        raws = [runner.detect(rgb, int(round(t * 1000))) for (t, _), rgb in zip(frames, decoded)]
    runner.close()
    main = MainFace()
    with clock(figures, "face_geometry"):
        observations = [(t, *main.observe(raw, (rgb.shape[1], rgb.shape[0]), t)) for (t, rgb), raw in zip(frames, raws)]
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    with clock(figures, "vad"):
        speech = detect_speech(samples, 16000, settings.audio.vad_aggressiveness)
    with clock(figures, "prosody"):
        measure_prosody(samples, 16000, speech)
    recognizer = create_recognizer(settings.audio)
    recognizer.transcribe(samples[:16000])  # loads the model outside the timed region
    with clock(figures, "speech_recognition"):
        transcript = recognizer.transcribe(samples, question=QUESTION)
    recognizer.close()
    with clock(figures, "nlp"):
        nlp = analyse_transcript(transcript, QUESTION)
    with clock(figures, "vision_summary"):
        summarise_vision(observations, gateway.sample_fps)
    audio = analyse_audio(samples, 16000, transcript, settings.audio)
    outputs = {
        "duration_s": duration, "frames": frames, "jpegs": jpegs, "observations": observations,
        "pcm": pcm, "transcript": transcript, "audio": audio, "nlp": nlp,
    }
    return figures, outputs


def _messages(outputs: dict):
    """The answer's messages as the services publish them, by topic, in order."""
    from poise_common.messages import (
        AnswerMediaDone, AudioChunk, AudioEnd, AudioFeatures, Envelope, Frame, FrameFeaturesBatch, FramesEnd,
        FrameSeen, InterviewOpened, NlpFeatures, Question, Topics, Transcript, VisionEnd,
    )
    from poise_common.settings import VisionSettings

    base = Envelope(interview_id="bench", answer_id="bench-a1", tenant="local", stream="control", seq=0,
                    payload=FramesEnd(count=0))
    frames, jpegs, observations = outputs["frames"], outputs["jpegs"], outputs["observations"]
    height, width = frames[0][1].shape[:2]
    media = [base.follow("frames", seq, Frame(t_s=t, width=width, height=height, jpeg=jpeg))
             for seq, ((t, _), jpeg) in enumerate(zip(frames, jpegs))]
    media.append(base.follow("frames", len(frames), FramesEnd(count=len(frames))))
    pcm = outputs["pcm"]
    chunks = [pcm[i:i + 32000] for i in range(0, len(pcm), 32000)]
    audio = [base.follow("audio", seq, AudioChunk(t_s=float(seq), pcm=chunk)) for seq, chunk in enumerate(chunks)]
    audio.append(base.follow("audio", len(chunks), AudioEnd(count=len(chunks), question=QUESTION)))
    opened = Envelope(interview_id="bench", tenant="local", stream="control", seq=0,
                      payload=InterviewOpened(role="generic", questions=[Question(question_id="q1", text=QUESTION)]))
    done = base.follow("control", 1, AnswerMediaDone(
        question_id="q1", duration_s=outputs["duration_s"], frame_count=len(frames), audio_count=len(chunks),
        has_video=True, width=width, height=height, source_fps=25.0, sample_fps=10.0))
    seen = [FrameSeen(seq=seq, t_s=t, face_count=count, face=face) for seq, (t, count, face) in enumerate(observations)]
    size = VisionSettings().feature_batch_frames  # in batches, as vision publishes them
    vision = [base.follow("vision", start, FrameFeaturesBatch(frames=seen[start:start + size]))
              for start in range(0, len(seen), size)]
    vision.append(base.follow("vision", len(observations), VisionEnd(count=len(observations))))
    features = {
        Topics.MEDIA_CONTROL: [opened, done],
        Topics.FEATURES_VISION: vision,
        Topics.FEATURES_AUDIO: [base.follow("audio", 0, AudioFeatures(signals=outputs["audio"]))],
        Topics.TRANSCRIPTS: [base.follow("transcript", 0, Transcript(
            question=QUESTION, duration_s=outputs["duration_s"], segments=outputs["transcript"]))],
        Topics.FEATURES_NLP: [base.follow("nlp", 0, NlpFeatures(signals=outputs["nlp"]))],
    }
    return {Topics.MEDIA_FRAMES: media, Topics.MEDIA_AUDIO: audio, **features}, features


async def _through_bus(messages: dict) -> None:
    """Every message of the answer published and consumed once, by a group that does nothing."""
    from poise_common.bus.memory import MemoryBus

    bus = MemoryBus()
    await bus.start()
    total = sum(map(len, messages.values()))
    seen = asyncio.Event()
    count = 0

    async def consume(_env) -> None:
        nonlocal count
        count += 1
        if count == total:
            seen.set()

    await bus.subscribe(list(messages), "bench", consume)
    for topic, envelopes in messages.items():
        for env in envelopes:
            await bus.publish(topic, env)
    await seen.wait()
    await bus.stop()


def _fusion_database(home: Path):
    """A migrated SQLite database for fusion: set up before the fusion stage is timed, as the
    embedded mode does when it starts (with the imports, 1 to 2 CPU s that no answer pays)."""
    from poise_common.db.engine import create_db_engine, upgrade
    from poise_common.settings import PoiseSettings

    import poise_fusion.service  # noqa: F401 - imported here, not in the timed stage

    engine = create_db_engine(PoiseSettings(home=home).resolved_database_url)
    upgrade(engine)
    return engine


async def _through_fusion(features: dict, engine, home: Path) -> None:
    """Fusion storing the answer's features in SQLite and scoring it, as in the embedded mode."""
    from poise_common.bus.memory import MemoryBus
    from poise_common.db.engine import session_factory
    from poise_common.messages import Topics
    from poise_common.settings import PoiseSettings
    from poise_fusion.service import FusionService
    from poise_fusion.store import FusionStore

    settings = PoiseSettings(home=home)
    bus = MemoryBus()
    await bus.start()
    scored = asyncio.Event()

    async def on_score(env) -> None:
        if env.payload.type == "interview.scored":
            scored.set()

    await bus.subscribe([Topics.SCORECARDS], "bench", on_score)
    fusion = FusionService(bus, FusionStore(session_factory(engine)), settings)
    await fusion.start()
    for topic, envelopes in features.items():
        for env in envelopes:
            await bus.publish(topic, env)
    await asyncio.wait_for(scored.wait(), 300)
    await fusion.stop()
    await bus.stop()


def measure(path: Path) -> dict:
    """Every stage's figures, the model floor and the overhead stages' sum."""
    figures, outputs = measure_stages(path)
    everything, features = _messages(outputs)
    with clock(figures, "bus"):
        asyncio.run(_through_bus(everything))
    with tempfile.TemporaryDirectory() as home:
        engine = _fusion_database(Path(home))
        with clock(figures, "fusion"):
            asyncio.run(_through_fusion(features, engine, Path(home)))
        engine.dispose()
    duration = outputs["duration_s"]
    pipeline = ("decode_video_sandboxed", "decode_audio_sandboxed", "jpeg_decode",
                "face_geometry", "vision_summary", "bus", "fusion")
    return {
        "input": {"duration_s": round(duration, 3), "frames": len(outputs["frames"]),
                  "words": outputs["nlp"].word_count, "messages": sum(map(len, everything.values()))},
        "stages": {name: {**v, "media_s_per_cpu_s": round(duration / v["cpu_s"], 1) if v["cpu_s"] else None}
                   for name, v in figures.items()},
        "model_cpu_s": round(sum(figures[s]["cpu_s"] for s in MODEL_STAGES), 3),
        "pipeline_cpu_s": round(sum(figures[s]["cpu_s"] for s in pipeline), 3),
    }


def main() -> None:
    _, path = bench_input(__doc__)
    started = machine()
    result = {"benchmark": "stage_profile", "when": now_utc(), "machine": started, **measure(path)}
    result["machine"]["load_average_1m_after"] = machine()["load_average_1m"]
    saved = save("stage_profile", result)
    print_stages(result)
    print(f"saved {saved}")


def print_stages(result: dict) -> None:
    print(f"input: {result['input']['duration_s']:.1f} s, {result['input']['frames']} frames, "
          f"{result['input']['messages']} bus messages; load average {result['machine']['load_average_1m']}")
    print(f"{'stage':<24}{'cpu s':>8}{'wall s':>8}{'media s / cpu s':>17}")
    for name, v in result["stages"].items():
        print(f"{name:<24}{v['cpu_s']:>8.3f}{v['wall_s']:>8.3f}{v['media_s_per_cpu_s'] or 0:>17.1f}")
    print(f"model compute (the floor): {result['model_cpu_s']:.2f} CPU s; "
          f"pipeline stages: {result['pipeline_cpu_s']:.2f} CPU s")


if __name__ == "__main__":
    main()
