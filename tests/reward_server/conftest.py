"""One real reward server per test session: `reward-server` CLI in a subprocess on 127.0.0.1.

It runs on random weights with a tiny CLIP (tiny-clip.json), so tests check formulas, plumbing
and error handling, not the quality judgements of the real models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from reward_support import LIMITS, TOKEN, tiny_clip_env

from reward_server.client import RewardClient
from reward_server.ports import free_port


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> str:
    cfg = tmp_path_factory.mktemp("reward") / "reward.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in LIMITS.items()) + "micro_batch_wait_ms: 100\n")
    port = free_port()
    env = {**os.environ, **tiny_clip_env(), "REWARD_SERVER_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    log = tmp_path_factory.mktemp("reward-log") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reward_server.cli", "--config", str(cfg), "--port", str(port), "--random-weights",
             "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"reward server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"reward server not ready after 180 s:\n{log.read_text()}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def client(server) -> RewardClient:
    """The Python client, without retries so that a failure shows at once."""
    with RewardClient(server, token=TOKEN, retries=0) as c:
        yield c
