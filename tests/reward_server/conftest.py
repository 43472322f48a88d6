"""One real reward server per test session: `reward-server` CLI in a subprocess on 127.0.0.1.

It runs on random weights with a tiny CLIP (tiny-clip.json), so tests check formulas, plumbing
and error handling, not the quality judgements of the real models.
"""

from __future__ import annotations

import sys

import httpx
import pytest
from reward_support import LIMITS, TOKEN, tiny_clip_env

from irpo_common.process import ManagedProcess, free_port
from reward_server.client import RewardClient


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> str:
    cfg = tmp_path_factory.mktemp("reward") / "reward.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in LIMITS.items()) + "micro_batch_wait_ms: 100\n")
    port = free_port()
    env = {**tiny_clip_env(), "REWARD_SERVER_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "reward_server.cli", "--config", str(cfg), "--port", str(port), "--random-weights",
           "--log-level", "warning"]
    log = tmp_path_factory.mktemp("reward-log") / "server.log"
    with ManagedProcess("reward server", cmd, f"http://127.0.0.1:{port}", env=env, log_path=log).start(180) as proc:
        yield proc.url


@pytest.fixture(scope="session")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def client(server) -> RewardClient:
    """The Python client, without retries so that a failure shows at once."""
    with RewardClient(server, token=TOKEN, retries=0) as c:
        yield c
