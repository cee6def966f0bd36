# Poise: `make run` scores the bundled sample interview; `make test` runs every test.
# Both set everything up first (idempotent: quick when nothing changed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
VENV := .venv
UV := $(VENV)/bin/uv
SAMPLE := examples/sample_interview.mp4
# Tools the deployment tests run (tests/deploy), built into .tools/ (git-ignored).
HELM_VERSION := v3.22.0
TOOLS := $(CURDIR)/.tools
HELM_STAMP := $(TOOLS)/helm-$(HELM_VERSION).built
QUESTIONS := examples/questions.yaml
# The GPU image's Python environment (docker/gpu/requirements.txt, whisperx and CUDA torch), built
# beside .venv to run on the CPU what only that image runs; rebuilt when the pins change.
GPU_VENV := .venv-gpu
GPU_REQUIREMENTS := docker/gpu/requirements.txt
GPU_STAMP := $(GPU_VENV)/requirements.built

.PHONY: setup system-packages tools run test gpu-env gpu-env-test bench up down proto sample clean help

help:
	@echo "make run    - set up, then score the sample interview in one process"
	@echo "make test   - set up, then run every test"
	@echo "make setup  - create .venv from uv.lock and fetch the models (SHA-256 checked)"
	@echo "make tools  - build helm $(HELM_VERSION) into .tools/bin (for the chart tests in tests/deploy)"
	@echo "make gpu-env-test - build $(GPU_VENV) from $(GPU_REQUIREMENTS) (~3.4 GB of wheels) and run docker/gpu/tests in it"
	@echo "make up     - start the distributed stack locally (Kafka, PostgreSQL, five services)"
	@echo "make down   - stop it"
	@echo "make bench  - run the benchmarks in bench/ (figures saved under bench/results/)"
	@echo "make proto  - regenerate the gRPC code from proto/poise/v1/*.proto"
	@echo "make sample - rebuild $(SAMPLE) from ../shared/media"

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "Poise needs Python 3.11 (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set, every process (each service,
# test server and CLI call) would otherwise compile its imports from source, 1.3 s a start.
setup: $(UV)
	$(UV) sync --locked --quiet --compile-bytecode
	$(VENV)/bin/python -m poise_common.model_files

# helm from its Go module (the Go module proxy, no prebuilt download); once per version.
$(HELM_STAMP):
	@command -v go >/dev/null || { echo "make tools: building helm needs Go on PATH"; exit 1; }
	GOBIN=$(TOOLS)/bin go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@touch $@

tools: $(HELM_STAMP)
	@test -x $(TOOLS)/bin/helm || { rm -f $(HELM_STAMP); $(MAKE) --no-print-directory $(HELM_STAMP); }

# From scratch each time the pins change (uv's cache makes a rebuild quick): the same Python as
# .venv, the pinned wheels with their hashes as the image installs them, Poise's packages editable
# (the tests see the working tree), and pytest and the Triton server at the lock's versions.
$(GPU_STAMP): $(GPU_REQUIREMENTS) | $(UV)
	rm -rf $(GPU_VENV)
	$(UV) venv --quiet --python "$$($(VENV)/bin/python -c 'import sys; print(sys._base_executable)')" $(GPU_VENV)
	$(UV) pip install --quiet --python $(GPU_VENV)/bin/python --require-hashes --no-deps -r $(GPU_REQUIREMENTS)
	$(UV) pip install --quiet --python $(GPU_VENV)/bin/python --no-deps \
		-e libs/common -e services/vision -e services/audio -e tools/devstack
	$(UV) export --frozen --only-dev --no-hashes --no-header --no-annotate --format requirements-txt \
		--quiet -o $(GPU_VENV)/dev-locked.txt
	$(UV) pip install --quiet --python $(GPU_VENV)/bin/python -c $(GPU_VENV)/dev-locked.txt pytest pytest-timeout
	$(UV) pip install --quiet --python $(GPU_VENV)/bin/python --no-deps -c $(GPU_VENV)/dev-locked.txt nvidia-pytriton
	@touch $@

gpu-env: $(GPU_STAMP)

gpu-env-test: gpu-env
	$(GPU_VENV)/bin/python -m pytest docker/gpu/tests

system-packages:
	@scripts/ensure_system_packages.sh

run: setup
	$(VENV)/bin/poise score $(SAMPLE) --questions $(QUESTIONS)

test: setup system-packages tools gpu-env
	$(VENV)/bin/python -m poise_devstack kafka-jars >/dev/null
	$(VENV)/bin/python -m pytest
	$(GPU_VENV)/bin/python -m pytest docker/gpu/tests

bench: setup system-packages
	$(VENV)/bin/python bench/embedded_throughput.py --runs 3 --gap 10
	$(VENV)/bin/python bench/distributed_vs_embedded.py
	$(VENV)/bin/python bench/triton_vs_local.py

up: setup system-packages
	$(VENV)/bin/python -m poise_devstack up

down:
	$(VENV)/bin/python -m poise_devstack down

proto: setup
	$(VENV)/bin/python scripts/gen_proto.py

sample: setup
	$(VENV)/bin/python scripts/build_sample.py

clean:
	rm -rf $(VENV) $(GPU_VENV) .pytest_cache
