# syntax=docker/dockerfile:1
# One small image per Poise service, all from the one locked dependency set (uv.lock):
#
#   docker build -f docker/service.Dockerfile --build-arg SERVICE=vision -t poise-vision .
#
# SERVICE: gateway, vision, audio, nlp, fusion (runs `python -m poise_<SERVICE>`), or cli (the
# `poise` command with every service inside: `poise keys create ...`, `poise serve`).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ARG UV_VERSION=0.13.8
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/poise
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# Every member's pyproject.toml, so that `--locked` can check uv.lock against the workspace.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/vision/pyproject.toml services/vision/
COPY services/audio/pyproject.toml services/audio/
COPY services/nlp/pyproject.toml services/nlp/
COPY services/fusion/pyproject.toml services/fusion/
COPY cli/pyproject.toml cli/
COPY tools/devstack/pyproject.toml tools/devstack/
# Third-party packages first: this layer is reused while only Poise's own code changes.
RUN case "${SERVICE}" in \
      gateway|vision|audio|nlp|fusion) echo "poise-${SERVICE}" > /tmp/package ;; \
      cli) echo poise > /tmp/package ;; \
      *) echo "build with --build-arg SERVICE=gateway|vision|audio|nlp|fusion|cli" >&2; exit 1 ;; \
    esac \
 && uv sync --locked --no-dev --no-install-workspace --package "$(cat /tmp/package)"
COPY libs/common libs/common
COPY services services
COPY cli cli
# Not editable: the environment stands alone and /src stays behind in this stage.
RUN uv sync --locked --no-dev --no-editable --package "$(cat /tmp/package)" \
 && if [ "${SERVICE}" = vision ] || [ "${SERVICE}" = cli ]; then /opt/poise/bin/python -m poise_common.model_files; fi

FROM ${PYTHON_IMAGE}
ARG SERVICE
# MediaPipe's library links EGL and GLES even though its face graph runs on the CPU.
RUN if [ "${SERVICE}" = vision ] || [ "${SERVICE}" = cli ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends libegl1=1.6.0-1 libgles2=1.6.0-1 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 poise \
 && useradd --system --uid 10001 --gid poise --home-dir /var/lib/poise --create-home --shell /usr/sbin/nologin poise
COPY --from=build /opt/poise /opt/poise
COPY docker/entrypoint.sh /usr/local/bin/poise-entrypoint
ENV PATH=/opt/poise/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE=${SERVICE} \
    POISE_HOME=/var/lib/poise \
    POISE_HTTP_HOST=0.0.0.0
WORKDIR /var/lib/poise
# A numeric user, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/poise-entrypoint"]
