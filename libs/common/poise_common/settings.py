"""Settings for every Poise process, read from ``POISE_*`` environment variables.

The defaults are the embedded profile: in-memory bus, SQLite under ``POISE_HOME``,
models in-process on the CPU. A distributed deployment changes URLs, not code.
Nested models take their prefix from their path: ``POISE_VISION__SAMPLE_FPS``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_models_dir() -> Path:
    # Model files travel with the environment that `make setup` built, like package data.
    return Path(sys.prefix) / "share" / "poise" / "models"


class GatewaySettings(BaseModel):
    """Probing, validation and splitting of uploaded answers."""

    port: int = Field(8080, description="HTTP port of the gateway process (upload API, health, metrics).")
    max_file_bytes: int = Field(2 * 1024**3, description="Largest accepted upload, in bytes.")
    max_duration_s: float = Field(20 * 60.0, description="Longest accepted answer, in seconds.")
    max_width: int = Field(4096, description="Widest accepted video frame, in pixels.")
    max_height: int = Field(4096, description="Tallest accepted video frame, in pixels.")
    max_fps: float = Field(120.0, description="Highest accepted average frame rate.")
    sample_fps: float = Field(10.0, description="Frames per second sent to vision.")
    frame_width: int = Field(640, description="Width of frames sent to vision (height keeps the aspect).")
    jpeg_quality: int = Field(85, ge=30, le=100, description="JPEG quality of frames on the bus.")
    audio_chunk_s: float = Field(1.0, description="Seconds of 16 kHz mono PCM per audio message.")
    media_memory_mb: int = Field(
        3072, ge=64,
        description="Address-space limit of each child process that probes or decodes an upload, in MiB; "
        "a file that needs more is refused (decode_memory).",
    )
    media_cpu_s: float = Field(
        30.0, gt=0,
        description="CPU seconds a probe of one upload may use; past them its process is killed and the "
        "file refused (decode_timeout).",
    )
    media_cpu_per_media_s: float = Field(
        2.0, gt=0,
        description="CPU seconds a decode may use per second of media, on top of media_cpu_s.",
    )
    media_timeout_s: float = Field(
        60.0, gt=0,
        description="Wall-clock seconds a probe may take, and a decode may go without its next frame or "
        "audio chunk, before its process is killed and the file refused (decode_timeout).",
    )
    media_fork_server: bool = Field(
        True,
        description="Fork each probe and decode process from a process that has imported the decoders "
        "(Linux): milliseconds per job instead of starting Python (about 0.6 CPU s). Off, or where the "
        "platform lacks pidfds, each job starts a fresh Python.",
    )
    media_warm_processes: int = Field(
        2, ge=0, le=16,
        description="Without the fork server: probe and decode processes started ahead of need, so an "
        "upload does not wait for one.",
    )
    media_nice: int = Field(
        10, ge=0, le=19,
        description="Scheduling niceness of the probe and decode processes. Decoding runs well ahead of the "
        "face model, so where both share the CPU it yields to the model; 0 runs it as the service runs.",
    )


class VisionSettings(BaseModel):
    """Face landmarks, blendshapes and head pose per sampled frame."""

    port: int = Field(8081, description="HTTP port of the vision process (health, metrics).")
    face_model_path: Path = Field(
        default_factory=lambda: default_models_dir() / "face_landmarker.task",
        description="MediaPipe FaceLandmarker bundle (face_landmarker.task).",
    )
    max_faces: int = Field(
        2, description="Faces followed at most. While one is followed, the whole frame is looked at for others "
        "every 5 frames; more than one raises a warning.",
    )
    face_model_cpu: Literal["auto", "on", "off"] = Field(
        "auto",
        description="In-process face model: while one answer's frames are analysed, run the model (which the "
        "answer's scoring waits for) on a CPU of its own and the rest of the process and its worker processes "
        "on the other CPUs (Linux, two CPUs or more; never the lowest CPU, nor one another process holds). A "
        "second answer at once gives every thread every CPU back. auto: on where one process runs the whole "
        "pipeline (poise score, poise serve), off in a vision worker, which is scaled by running several. "
        "Only with one face lane (face_lanes): several lanes share every CPU.",
    )
    face_lanes: int = Field(
        0, ge=0, le=16,
        description="In-process face model: landmarkers that work on one answer's frames at once, each on a "
        "thread of its own, each taking the next span of the answer (face_span_frames). Every span is followed "
        "from a fresh start, so the faces are the same whatever the number of lanes. 0: as many as this process "
        "can use CPUs (its affinity and container quota), at most 4.",
    )
    face_span_frames: int = Field(
        32, ge=2, le=100_000,
        description="Frames followed from one fresh detection of the faces: each span of an answer starts over "
        "(in process and through Triton alike), which lets spans run at once (face_lanes). Within a span the "
        "main face is followed from frame to frame and the whole frame is looked at for others every 5 frames.",
    )
    feature_batch_frames: int = Field(
        50, ge=1, description="Frames whose features travel in one message to fusion (the last batch of an answer "
        "may be smaller).",
    )


class AudioSettings(BaseModel):
    """Voice activity, prosody and speech recognition."""

    port: int = Field(8082, description="HTTP port of the audio process (health, metrics).")
    asr_model_path: str | None = Field(
        None, description="CTranslate2 Whisper model folder; unset means the bundled tiny.en."
    )
    asr_compute_type: str = Field("int8", description="CTranslate2 compute type.")
    asr_threads: int = Field(
        1, ge=1,
        description="CPU threads for speech recognition. One uses the least CPU an answer (a second thread cut the "
        "79 s answer from 2.5 to 1.95 s for 12 % more CPU); more suit a worker with CPUs to spare.",
    )
    asr_nice: int = Field(
        10, ge=0, le=19,
        description="Scheduling niceness of in-process speech recognition and of the prosody process: where they "
        "share the CPU with the face model, they yield to it (with one face lane the model's frames are what an "
        "answer waits for; with lanes the transcript then comes last, and 0 measured the same wall time). 0 runs "
        "them as the process runs.",
    )
    prosody_process: bool = Field(
        True,
        description="Measure pitch (Praat) in a worker process: Praat holds Python's lock for up to 0.2 s a "
        "call, which stalls whatever else the process runs (the face model, embedded).",
    )
    asr_beam_size: int = Field(1, description="Beam size; 1 is greedy decoding.")
    asr_disfluent_prompt: bool = Field(
        True, description="Prompt Whisper with disfluent text so that it writes filled pauses (um, uh)."
    )
    vad_aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad aggressiveness, 0-3.")


class NlpSettings(BaseModel):
    """Content features of transcripts."""

    port: int = Field(8083, description="HTTP port of the NLP process (health, metrics).")
    min_words_for_scoring: int = Field(8, description="Fewer words than this is insufficient evidence.")


class FusionSettings(BaseModel):
    """Joining the streams, scoring and storing scorecards."""

    port: int = Field(8084, description="HTTP port of the fusion process (scorecards, health, metrics).")
    frameworks_dir: Path | None = Field(
        None, description="Folder of competency framework YAML files; unset means the bundled ones."
    )
    default_role: str = Field("generic", description="Competency profile used when none is given.")
    default_policy: Literal["default", "eu", "us-nyc", "us-il"] = Field(
        "default",
        description="Policy profile of a tenant without stored settings (`poise tenants set-policy`): default "
        "(what was said, voice and face may feed scores), eu (only what was said), us-nyc (scorecards carry the "
        "candidate notice), us-il (no analysis without the candidate's recorded consent).",
    )
    short_answer_words: int = Field(
        50, ge=0,
        description="An answer with fewer words (but at least nlp.min_words_for_scoring) is scored with a warning "
        "that its scores rest on little evidence: over a few dozen words one hedge or filler moves a rate per 100 "
        "words by a whole band (one hedge in 22 words is 4.5 per 100; in 50 words, 2).",
    )
    min_face_presence: float = Field(
        0.5, ge=0, le=1,
        description="Share of an answer's sampled frames that must show a face for its face measurements (eye "
        "contact, smiles, blinks, head movement) to be kept and to feed scores; below it they are null, as "
        "without a face, with a warning. Under half, the ratios describe the minority of the answer in which a "
        "face was seen, and a handful of frames decide them (one face frame makes eye contact 0 or 1).",
    )
    face_presence_warning: float = Field(
        0.9, ge=0, le=1,
        description="Below this share of frames with a face (and at or above min_face_presence) the face "
        "measurements are kept with a warning stating the share: they describe only the frames with a face. Above "
        "it, the odd frame the detector misses (motion blur, a hand) goes unremarked.",
    )
    webhook_max_attempts: int = Field(12, description="Deliveries of one event to a webhook before it is marked failed.")
    webhook_backoff_s: float = Field(5.0, description="Delay before the first retry of a webhook; it doubles per attempt.")
    webhook_timeout_s: float = Field(10.0, description="Deadline of one webhook delivery.")
    allow_private_targets: bool = Field(
        False,
        description="Let webhooks and Greenhouse callbacks go to loopback, private, link-local and other non-public "
        "addresses: for a single-host install whose receivers run beside it. Off, such URLs are refused when they "
        "are given, and again when each request is sent (the host is resolved then and the request goes to the "
        "address checked).",
    )


class RetentionSettings(BaseModel):
    """How long candidate data is kept, and the purge job that removes what is older."""

    default_days: int = Field(
        365, ge=0, description="Days an interview's data is kept after it was created, for a tenant without its own "
        "retention (`poise retention set`); then the purge job removes it as an erasure would.",
    )
    upload_max_age_days: float = Field(
        7.0, gt=0, description="Days the gateway keeps the media of an interview that was never completed.",
    )
    purge_interval_s: float = Field(600.0, gt=0, description="Seconds between two runs of the purge job.")
    tombstone_days: float = Field(
        30.0, gt=0, description="Days an erased interview's id is remembered (nothing else of it), so messages "
        "still on the bus for it are dropped rather than stored again. Longer than the topics' retention.",
    )


class ServeSettings(BaseModel):
    """`poise serve`: every service in one process behind one HTTP API."""

    port: int = Field(8000, description="HTTP port of the embedded server (API, health, metrics).")


class InferenceSettings(BaseModel):
    """Where the heavy models run: in this process, or on an NVIDIA Triton server."""

    url: str = Field("local", description="local (in-process) or triton://host:grpc_port.")
    timeout_s: float = Field(60.0, description="Deadline of one inference call.")
    retries: int = Field(4, description="Retries of a failed call (with backoff) before it counts as a failure.")
    backoff_s: float = Field(0.25, description="First retry delay; it doubles per retry.")
    start_timeout_s: float = Field(60.0, description="How long start-up waits for the server and models.")
    face_model: str = Field("face_landmarker", description="Triton model name of the face landmarker.")
    speech_model: str = Field("speech_recognizer", description="Triton model name of the speech recognizer.")
    batch_size: int = Field(1, description="Items per request; the model's max_batch_size must be at least this.")
    face_lanes: int = Field(
        1, ge=1, le=16,
        description="Triton sequences one answer's frames run in at once (face lanes: spans of "
        "vision.face_span_frames, each from a fresh start, a sequence each), so that one answer uses several "
        "of the face model's instances; the faces are the same as with one. 1: one sequence an answer (with many "
        "answers at once every instance is busy anyway).",
    )


class SmtpSettings(BaseModel):
    """Outgoing email: candidate invitations. Without ``url`` no email is sent."""

    url: str | None = Field(
        None, description="SMTP server as host:port (or smtps://host:port for TLS from the start); unset: no email."
    )
    from_address: str = Field("Poise <no-reply@localhost>", description="The From header of invitation emails.")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS before logging in or sending.")
    username: str | None = Field(None, description="Login name; unset means no login.")
    password: SecretStr | None = Field(None, description="Login password.")
    timeout_s: float = Field(20.0, description="Deadline of one SMTP conversation.")
    max_attempts: int = Field(10, description="Attempts at one invitation before it is marked failed.")
    backoff_s: float = Field(30.0, description="Delay before the first retry of an invitation; it doubles per attempt.")


class PoiseSettings(BaseSettings):
    """Everything a Poise process reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="POISE_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    home: Path = Field(Path("~/.poise"), description="Folder of local state: database, media, keys.")
    bus_url: str = Field("memory://", description="memory:// (embedded) or kafka://host:port[,host:port].")
    database_url: str | None = Field(None, description="SQLAlchemy URL; unset means SQLite under home.")
    migrate_on_start: bool = Field(
        True,
        description="Processes that open the database bring its schema up to date at start; false where a "
        "separate step runs `python -m poise_common.db upgrade` first (the Helm chart's migration Job).",
    )
    tenant: str = Field("local", description="Tenant that CLI runs act for.")
    log_level: str = Field("INFO", description="Python logging level.")
    http_host: str = Field("127.0.0.1", description="Address the service processes' HTTP servers bind to.")
    public_url: str | None = Field(
        None,
        description="Where clients reach this deployment's API (e.g. https://poise.example.com); links handed "
        "to ATSs (Greenhouse invitation and profile URLs) start with it. Unset: this process's own address.",
    )
    invitation_secret: SecretStr | None = Field(
        None,
        description="Key that signs candidates' interview links; every process that makes or checks links needs "
        "the same one. Unset: one is generated once and kept in home/invitation.secret (single-host only).",
    )
    invitation_valid_days: float = Field(14.0, gt=0, description="How long a candidate's interview link works.")
    master_keys: SecretStr | None = Field(
        None,
        description="Master keys that wrap the tenants' data keys (AES-256-GCM): comma-separated id:base64 of 32 "
        "random bytes, the first one wrapping new keys, the others still unwrapping (rotation: see `poise keys "
        "rewrap`); every process needs the same list. Unset: one is generated once and kept in home/master.key "
        "(single-host only).",
    )
    audit_log_retention_days: float = Field(
        400.0, ge=183,  # EU AI Act Art. 26: deployers keep the logs at least 6 months
        description="Days audit log entries are kept before `poise audit-log prune` may remove them (at least 183).",
    )

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    vision: VisionSettings = Field(default_factory=VisionSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    nlp: NlpSettings = Field(default_factory=NlpSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def media_dir(self) -> Path:
        """Uploaded answers waiting to be published (distributed gateway)."""
        return self.home_dir / "media"

    def public_base_url(self, port: int) -> str:
        """``public_url``, else this process's own address on ``port`` (loopback for a wildcard bind)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{host}:{port}"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'poise.db'}"
