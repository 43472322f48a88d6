# syntax=docker/dockerfile:1
# The trainer image for Ray clusters (KubeRay head and workers, or `ray start` hosts): Ray's
# official GPU image of the same Ray version and Python as the project, plus this project.
# From the repository root:
#   docker build -f deploy/trainer.Dockerfile -t irpo-trainer:0.1.0 .
ARG RAY_VERSION=2.60.0
FROM rayproject/ray:${RAY_VERSION}-py311-gpu
ARG RAY_VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1
WORKDIR /home/ray/irpo
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users irpo_common irpo_common
COPY --chown=ray:users trainer trainer
COPY --chown=ray:users reward_server reward_server
COPY --chown=ray:users judge_server judge_server
COPY --chown=ray:users configs configs
# Pinning ray keeps pip from replacing the image's Ray with another release.
RUN pip install ".[train]" "ray[default]==${RAY_VERSION}"
