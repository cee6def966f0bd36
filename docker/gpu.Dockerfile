# syntax=docker/dockerfile:1
# The images for GPU nodes, from one Python 3.11 environment: the analysers' locked packages
# (uv.lock, poise-audio and poise-vision) plus whisperx and CUDA torch (docker/gpu/requirements.txt).
#
#   docker build -f docker/gpu.Dockerfile --target triton     -t poise-triton .
#   docker build -f docker/gpu.Dockerfile --target gpu-worker -t poise-gpu-worker .
#
# triton: NVIDIA's Triton server with Poise's model repository (deploy/triton/models); its Python
#   backend runs the models in this environment, the speech recognizer on the GPU.
# gpu-worker: the same environment on NVIDIA's CUDA runtime, for running the models outside
#   Triton; its default command reports what it finds (CUDA devices, whisperx, CTranslate2).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
# Triton 2.51: the release whose Python backend stub ships in nvidia-pytriton 0.7.0 (below).
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

# uv (pinned like the Makefile's) and the Python 3.11 build of Triton 2.51's backend stub: the NGC
# image's own stub is built for the image's Python, not for this environment's.
FROM ${PYTHON_IMAGE} AS tools
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
 && pip install --no-cache-dir --no-deps --target /opt/pytriton "nvidia-pytriton==0.7.0" \
 && cp /opt/pytriton/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub /opt/stub

FROM ${CUDA_IMAGE} AS env
COPY --from=tools /usr/local/bin/uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
WORKDIR /src
# A managed CPython 3.11 with its shared libpython, which the backend stub links against.
RUN uv python install 3.11 \
 && uv venv --python 3.11 /opt/poise \
 && ln -s "$(/opt/poise/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')" /opt/python/lib
COPY docker/gpu/requirements.txt docker/gpu/requirements.txt
RUN uv pip install --python /opt/poise/bin/python --require-hashes --no-deps -r docker/gpu/requirements.txt
COPY libs/common libs/common
COPY services/vision services/vision
COPY services/audio services/audio
COPY deploy/triton/models /models
COPY docker/gpu/gpu_config.py docker/gpu/gpu_config.py
COPY --from=tools /opt/stub /opt/stub
RUN uv pip install --python /opt/poise/bin/python --no-deps ./libs/common ./services/vision ./services/audio \
 && /opt/poise/bin/python -m poise_common.model_files \
 && /opt/poise/bin/python docker/gpu/gpu_config.py /models \
 && for model in /models/*/; do cp /opt/stub "${model}triton_python_backend_stub"; done \
 && find /models -name __pycache__ -prune -exec rm -rf {} +

FROM ${CUDA_IMAGE} AS gpu-worker
# MediaPipe's library links EGL and GLES even though its face graph runs on the CPU.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libegl1=1.4.0-1 libgles2=1.4.0-1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 poise \
 && useradd --system --uid 10001 --gid poise --home-dir /var/lib/poise --create-home --shell /usr/sbin/nologin poise
COPY --from=env /opt/python /opt/python
COPY --from=env /opt/poise /opt/poise
COPY docker/gpu/check_gpu.py /opt/check_gpu.py
ENV PATH=/opt/poise/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    POISE_HOME=/var/lib/poise
WORKDIR /var/lib/poise
USER 10001:10001
CMD ["python", "/opt/check_gpu.py"]

FROM ${TRITON_IMAGE} AS triton
RUN apt-get update \
 && apt-get install -y --no-install-recommends libegl1=1.4.0-1 libgles2=1.4.0-1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=env /opt/python /opt/python
COPY --from=env /opt/poise /opt/poise
COPY --from=env /models /models
# The backend stub finds its Python through the first python3 on PATH, and must load this
# environment's libpython rather than the image's own.
ENV PATH=/opt/poise/bin:$PATH \
    LD_LIBRARY_PATH=/opt/python/lib:$LD_LIBRARY_PATH \
    PYTHONUNBUFFERED=1
# The image's unprivileged user (triton-server).
USER 1000:1000
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-config-name=gpu", "--exit-on-error=true", \
     "--disable-auto-complete-config"]
