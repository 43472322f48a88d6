"""One real reward server per test session: `reward-server` CLI in a subprocess on 127.0.0.1.

It runs on random weights with a tiny CLIP (tiny-clip.json), so tests check formulas, plumbing
and error handling, not the quality judgements of the real models.
"""

from __future__ import annotations

import httpx
import pytest
from reward_support import TOKEN, reward_server

from reward_server.client import RewardClient


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> str:
    # a small admission limit, so that test_reward_burst sees shedding; other tests send at most 9 at once
    with reward_server(tmp_path_factory.mktemp("reward"), micro_batch_wait_ms=100, max_pending_requests=16) as proc:
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
