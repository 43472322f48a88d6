"""Scoring: a judge answer without a score drops R_judge for its whole group (group-mates share one
scale); the clients' retry budget and timeouts fit the services'."""

import threading

import pytest
from fastapi import FastAPI

from devtools.local_servers import ThreadedServer
from irpo_common.process import free_port
from judge_server.app import create_app
from judge_server.settings import JudgeSettings
from reward_server.client import RewardClient, RewardServiceUnavailable
from trainer.actors.scoring import Scorer, check_judge_deadline, drop_judge_per_group
from trainer.config import ConfigError, JudgeConfig, RewardConfig


def test_a_missing_judge_score_drops_the_term_for_the_whole_group_only():
    answers = [0.5, None, 0.75, 1.0, 0.25, 0.5, 0.75, 1.0]  # two images, G = 4; image 0 has one unscored answer
    assert drop_judge_per_group(answers, 4) == [None] * 4 + [0.25, 0.5, 0.75, 1.0]
    assert drop_judge_per_group(answers, 2) == [None, None, 0.75, 1.0, 0.25, 0.5, 0.75, 1.0]
    assert drop_judge_per_group([0.5, 0.75], 2) == [0.5, 0.75]


def test_answers_that_do_not_split_into_groups_are_refused():
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        drop_judge_per_group([0.5] * 6, 4)


def test_the_reward_client_waits_out_a_cold_start_within_its_budget():
    """The service comes up only after the first attempts failed (as after a restart that loads
    models): a time budget covers it, whatever the retry count says; past the budget, the message
    names the knob."""
    port = free_port()
    app = FastAPI()
    app.get("/healthz")(lambda: {"status": "ok"})
    late = threading.Timer(1.5, lambda: servers.append(ThreadedServer(app, port=port).__enter__()))
    servers: list = []
    late.start()
    try:
        with RewardClient(f"http://127.0.0.1:{port}", retries=0, backoff_s=0.05, retry_for_s=60) as client:
            assert client.healthz() == {"status": "ok"}
    finally:
        late.join()
        for server in servers:
            server.__exit__()
    with RewardClient(f"http://127.0.0.1:{free_port()}", retries=100, backoff_s=0.05, retry_for_s=0.3) as client:
        with pytest.raises(RewardServiceUnavailable, match=r"no answer within the retry budget of 0.3 s \(\d+ attempts\).*reward.retry_for_s"):
            client.healthz()
    assert Scorer(RewardConfig(retry_for_s=42), JudgeConfig()).reward.retry_for_s == 42


def test_a_judge_client_timeout_within_the_service_deadline_is_refused():
    with ThreadedServer(create_app(JudgeSettings(request_timeout_s=100))) as judge:
        check_judge_deadline(JudgeConfig(url=judge.url, timeout_s=120), None)
        with pytest.raises(ConfigError, match=r"judge.timeout_s is 60 s but .* request_timeout_s of 100 s"):
            check_judge_deadline(JudgeConfig(url=judge.url, timeout_s=60), None)
