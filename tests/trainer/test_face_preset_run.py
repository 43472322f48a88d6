"""configs/paper-lrpo-faces.yaml, shrunk to tiny models, runs GRPO steps with LRPO's reward and training terms."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

from tests.trainer.run_fixtures import REPO
from trainer.config import load_config
from trainer.demo.face_corpus import fetch_faces
from trainer.metrics_log import read_metrics
from trainer.run import train

STEPS = 2


@pytest.fixture
def tiny_lrpo(tmp_path):
    faces = fetch_faces(tmp_path / "faces", size=32)
    assert not faces["reused"]
    overrides = {
        "policy.diffusion.pretrained": None,  # RANDOM tiny U-Net (logged as such)
        "policy.diffusion.block_out_channels": [8, 16],
        "policy.diffusion.sampling_steps": 4,
        "data.root": str(tmp_path / "faces"), "data.crop_size": 32, "data.face.size": 32, "data.face.real_world": {},
        "eval.identity_weights": None,
        "optim.max_steps": STEPS, "rollout.num_workers": 1, "rollout.images_per_worker": 2, "rollout.gpus_per_worker": 0,
        "learner.gpus_per_rank": 0, "rollout.cpus_per_worker": 1, "learner.cpus_per_rank": 1, "grpo.train_on": "all",
        "reward.start_local": True, "reward.local_args": ["--random-weights", "--config", str(REPO / "configs" / "reward-cpu-faces.yaml")],
        "reward.retry_for_s": 120, "reward.token_env": None, "checkpoint.dir": str(tmp_path / "ckpt"), "checkpoint.every_steps": STEPS,
        "logging.dir": str(tmp_path / "run"), "logging.progress": False, "logging.tensorboard": False,
        "ray.address": None, "ray.num_cpus": 2, "ray.object_store_mb": 200, "ray.temp_dir": tempfile.mkdtemp(prefix="ray-lrpo-", dir="/tmp"),
    }
    return load_config(REPO / "configs" / "paper-lrpo-faces.yaml", [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def test_the_lrpo_preset_runs_grpo_steps_on_tiny_models(tiny_lrpo, monkeypatch):
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"))
    cfg = tiny_lrpo
    result = train(cfg)
    rows = read_metrics(cfg.logging.dir / "metrics.jsonl")
    assert result.steps == STEPS and len(rows) == STEPS
    for key in ("reward/mean", "reward_terms/hps/mean", "reward_terms/clip_iqa/mean", "reward_terms/ssim/mean", "loss/gt_log_prob", "loss/ppo"):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert not any(k.startswith("reward_terms/task") for k in rows[0])  # no task-aware term exists for face
    assert {"hps", "clip_iqa"} <= set(result.random_reward_terms)  # the run names its random-weight terms
