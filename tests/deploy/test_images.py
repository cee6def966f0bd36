"""The Dockerfiles, checked without a Docker engine: hadolint, what they copy against the tree and
.dockerignore, unprivileged final stages, and the GPU image's pinned packages against uv.lock."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker

from conftest import REPO

DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("*Dockerfile"))
SERVICES = ("gateway", "vision", "audio", "nlp", "fusion")


def test_there_are_service_and_gpu_dockerfiles():
    assert {p.name for p in DOCKERFILES} == {"service.Dockerfile", "gpu.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(hadolint, dockerfile):
    done = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_fails_a_bad_dockerfile(hadolint, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    assert subprocess.run([hadolint, str(bad)], capture_output=True, timeout=60).returncode != 0


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage, by stage name (unnamed stages by their index)."""
    found: dict[str, list] = {}
    current = None
    for instruction, args in instructions(dockerfile):
        if instruction == "FROM":
            parts = args.split()
            current = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else str(len(found))
            found[current] = []
        elif current is not None:
            found[current].append((instruction, args))
    return found


def context_sources(dockerfile: Path) -> list[str]:
    """What the Dockerfile copies from the build context (not from other stages or images)."""
    sources = []
    for instruction, args in instructions(dockerfile):
        if instruction != "COPY" or "--from=" in args:
            continue
        words = [w for w in args.split() if not w.startswith("--")]
        sources += words[:-1]
    return sources


def _pattern(pattern: str) -> re.Pattern:
    regex = re.escape(pattern.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
    return re.compile(regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + "$")


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        if any(_pattern(rule.lstrip("!")).match(c) for c in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_keeps_sources_and_drops_tests():
    assert not dockerignored("services/vision/poise_vision/service.py")
    assert not dockerignored("deploy/triton/models/face_landmarker/1/model.py")
    assert dockerignored("services/vision/tests/test_vision.py")
    assert dockerignored("libs/common/poise_common/__pycache__/settings.cpython-311.pyc")
    assert dockerignored(".venv/bin/python")
    assert dockerignored("examples/sample_interview.mp4")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_what_is_copied_exists_and_is_in_the_build_context(dockerfile):
    sources = context_sources(dockerfile)
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"{dockerfile.name} copies {source}, which is not in the tree"
        assert not dockerignored(source), f"{dockerfile.name} copies {source}, which .dockerignore leaves out"


def test_the_service_image_sees_every_workspace_member():
    # `uv sync --locked` compares uv.lock with every member's pyproject.toml.
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = {
        str(path.parent.relative_to(REPO))
        for pattern in root["tool"]["uv"]["workspace"]["members"]
        for path in REPO.glob(f"{pattern}/pyproject.toml")
    }
    copied = {str(Path(s).parent) for s in context_sources(DOCKER / "service.Dockerfile") if s.endswith("pyproject.toml")}
    assert members <= copied, f"not copied: {sorted(members - copied)}"
    packages = {tomllib.loads((REPO / m / "pyproject.toml").read_text())["project"]["name"] for m in members}
    assert {f"poise-{s}" for s in SERVICES} | {"poise"} <= packages


@pytest.mark.parametrize("dockerfile, targets", [
    (DOCKER / "service.Dockerfile", ["1"]),
    (DOCKER / "gpu.Dockerfile", ["gpu-worker", "triton"]),
])
def test_final_stages_run_as_an_unprivileged_user(dockerfile, targets):
    found = stages(dockerfile)
    for target in targets:
        users = [args for instruction, args in found[target] if instruction == "USER"]
        assert users, f"{dockerfile.name}:{target} sets no USER"
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) > 0, f"{dockerfile.name}:{target} runs as {users[-1]}"


@pytest.mark.parametrize("service, module", [("nlp", "poise_nlp"), ("fusion", "poise_fusion")])
def test_the_entrypoint_runs_the_images_service(service, module):
    env = {**os.environ, "SERVICE": service, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "--help"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"python -m {module}" in done.stdout


def locked_pins(*packages: str) -> dict[str, str]:
    args = [str(Path(sys.executable).parent / "uv"), "export", "--frozen", "--offline", "--no-dev",
            "--no-emit-workspace", "--no-hashes", "--no-header", "--no-annotate", "--format", "requirements-txt"]
    for package in packages:
        args += ["--package", package]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # Only what installs on the image's platform (Linux x86_64, CPython 3.11).
    platform = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                "python_version": "3.11", "python_full_version": "3.11.11", "implementation_name": "cpython"}
    lines = [line for line in done.stdout.splitlines()
             if ";" not in line or Marker(line.split(";", 1)[1].strip(" \\")).evaluate(platform)]
    return pins("\n".join(lines))


def pins(text: str) -> dict[str, str]:
    return {
        m.group(1).lower().replace("_", "-"): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", text, re.MULTILINE)
    }


def test_the_gpu_environment_keeps_the_locked_versions():
    gpu = pins((DOCKER / "gpu" / "requirements.txt").read_text())
    locked = locked_pins("poise-audio", "poise-vision")
    assert len(locked) > 20
    differ = {name: (version, gpu.get(name)) for name, version in locked.items() if gpu.get(name) != version}
    assert not differ, f"docker/gpu/requirements.txt is behind uv.lock ({differ}): run docker/gpu/lock.sh"
    assert "whisperx" in gpu and "torch" in gpu


def _load_gpu_config():
    spec = importlib.util.spec_from_file_location("gpu_config", DOCKER / "gpu" / "gpu_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_config_changes_only_where_and_how_precisely_the_model_runs(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    gpu_config = _load_gpu_config()
    models = tmp_path / "models"
    source = REPO / "deploy" / "triton" / "models" / "speech_recognizer" / "config.pbtxt"
    (models / "speech_recognizer").mkdir(parents=True)
    (models / "speech_recognizer" / "config.pbtxt").write_text(source.read_text())
    (written,) = gpu_config.write_gpu_configs(models)
    assert written == models / "speech_recognizer" / "configs" / "gpu.pbtxt"
    cpu = text_format.Parse(source.read_text(), model_config_pb2.ModelConfig())
    gpu = text_format.Parse(written.read_text(), model_config_pb2.ModelConfig())
    assert [(g.kind, g.count) for g in gpu.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 4)]
    assert gpu.parameters["compute_type"].string_value == "float16"
    for field in ("name", "backend", "max_batch_size", "input", "output", "dynamic_batching"):
        assert getattr(gpu, field) == getattr(cpu, field), field
    assert set(gpu.parameters) == set(cpu.parameters)


def test_the_targeted_triton_release_supports_model_config_name():
    # The pytriton wheel carries the Triton release (2.51) that the NGC image 24.10 ships.
    import pytriton

    server = Path(pytriton.__file__).parent / "tritonserver"
    env = {**os.environ, "LD_LIBRARY_PATH": f"{server / 'external_libs'}:{server / 'lib'}"}
    done = subprocess.run([str(server / "bin" / "tritonserver"), "--help"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert "--model-config-name" in done.stdout + done.stderr
