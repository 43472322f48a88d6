"""Shared pieces of the trainer's run tests: a tiny photo corpus and a tiny run config."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import ray
from PIL import Image
from skimage import data as skdata

from trainer.config import TrainConfig
from trainer.model.presets import MICRO

REPO = Path(__file__).resolve().parents[2]
REWARD_ARGS = ["--random-weights", "--config", str(REPO / "configs" / "reward-cpu.yaml")]


def write_photos(root: Path, side: int = 40) -> Path:
    """A demo-layout corpus of real photos (scikit-image's bundled ones), downscaled to side x side."""
    photos = {"astronaut": skdata.astronaut(), "chelsea": skdata.chelsea(), "coffee": skdata.coffee(), "rocket": skdata.rocket()}
    for i, (name, arr) in enumerate(sorted(photos.items())):
        split = "test" if i == 3 else "train"
        (root / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(arr)).resize((side, side), Image.BICUBIC).save(root / split / f"{name}.png")
    return root


def tiny_config(run_dir: Path, photos: Path, reward_url: str, **sections) -> TrainConfig:
    raw = {
        "seed": 0,
        "model": MICRO,
        "data": {"source": "demo", "root": str(photos), "tasks": ["denoise"], "crop_size": 32, "noise_sigmas": [25.0]},
        "grpo": {"group_size": 4, "train_on": "all"},
        "optim": {"lr": 3e-4, "max_steps": 6},
        "rollout": {"num_workers": 1, "max_staleness": 1},
        "reward": {"url": reward_url, "retry_for_s": 120.0},
        "checkpoint": {"dir": str(run_dir / "checkpoints"), "every_steps": 2},
        "logging": {"dir": str(run_dir), "progress": False},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return TrainConfig.model_validate(raw)


@contextlib.contextmanager
def local_ray_session(prefix: str, num_cpus: int = 2):
    """A local Ray on loopback with its own short temp dir (Ray's socket paths have a length limit), never `ray stop`."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=200 * 1024 * 1024, _temp_dir=tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield
    finally:
        ray.shutdown()
