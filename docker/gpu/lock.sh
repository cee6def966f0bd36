#!/bin/sh
# Regenerate docker/gpu/requirements.txt: the locked packages of poise-audio and poise-vision
# (exported from uv.lock) plus docker/gpu/requirements.in, with every version and hash fixed.
# The lock's versions override what whisperx declares (it asks for other numpy, ctranslate2 and
# faster-whisper releases than the services run), so the GPU image runs the same code as the rest.
# Run from the repository root after changing uv.lock or requirements.in; tests/deploy checks it.
set -eu
uv=${UV:-.venv/bin/uv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$uv" export --locked --no-dev --no-emit-workspace --no-hashes --no-header --no-annotate \
    --package poise-audio --package poise-vision --format requirements-txt -o "$work/locked.txt" --quiet
"$uv" pip compile docker/gpu/requirements.in "$work/locked.txt" --override "$work/locked.txt" \
    --generate-hashes --no-header --no-annotate --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --quiet -o docker/gpu/requirements.txt
echo "wrote docker/gpu/requirements.txt"
