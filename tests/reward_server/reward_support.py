"""Constants and helpers shared by the reward tests (importable by name, unlike conftest.py)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from irpo_common.process import ManagedProcess, free_port

HERE = Path(__file__).parent
TOKEN = "test-token-123"
# nr_min_side: below the measured defaults (BRISQUE 96, NIQE 384, PIQE 256), to fit the pixel limit
LIMITS = {"max_pixels": 200 * 200, "max_body_bytes": 1_500_000, "max_batch_items": 32,
          "nr_min_side": "{brisque: 32, niqe: 192, piqe: 64}"}


def tiny_clip_env() -> dict[str, str]:
    return {
        "REWARD_SERVER_CLIP_MODEL": "tiny-clip",
        "REWARD_SERVER_CLIP_MODEL_CONFIG": str(HERE / "tiny-clip.json"),
    }


@contextlib.contextmanager
def reward_server(folder: Path, **settings):
    """A `reward-server` subprocess on 127.0.0.1 (tiny CLIP, RANDOM weights, token TOKEN) with LIMITS and
    `settings` in its YAML config; yields its URL."""
    cfg = folder / "reward.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in {**LIMITS, **settings}.items()))
    port = free_port()
    env = {**tiny_clip_env(), "REWARD_SERVER_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "reward_server.cli", "--config", str(cfg), "--port", str(port), "--random-weights",
           "--log-level", "warning"]
    with ManagedProcess("reward server", cmd, f"http://127.0.0.1:{port}", env=env, log_path=folder / "server.log").start(180) as proc:
        yield proc
