"""Scoring: a judge answer without a score drops R_judge for its whole group (group-mates share one
scale); the clients' retry budget and timeouts fit the services'."""

import threading
from types import SimpleNamespace

import pytest
import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from devtools.local_servers import ThreadedServer
from devtools.scripted_backend import FAST, ScriptedBackend
from irpo_common.process import free_port
from irpo_common.reward_spec import combine_rewards
from judge_server.app import create_app
from judge_server.settings import JudgeSettings
from reward_server.client import RewardClient, RewardServiceUnavailable
from trainer.actors.scoring import JudgeOutage, Scorer, check_fit, check_judge, check_terms, drop_judge_per_group
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


def test_the_reward_client_waits_as_long_as_a_503_asks():
    calls = []
    app = FastAPI()

    @app.get("/healthz")
    def busy():
        calls.append(1)
        return JSONResponse({"detail": "overloaded"}, status_code=503, headers={"Retry-After": "5"})

    with ThreadedServer(app) as server, RewardClient(server.url, backoff_s=0.01, retry_for_s=1.0) as client:
        with pytest.raises(RewardServiceUnavailable, match=r"retry budget of 1 s \(1 attempts\); last: 503"):
            client.healthz()  # a second attempt would come 5 s later, past the budget: none is made
    assert len(calls) == 1


def test_a_judge_that_does_not_fit_the_run_is_refused_at_start():
    with ThreadedServer(create_app(JudgeSettings(request_timeout_s=100, min_image_side=28))) as judge:
        check_judge(JudgeConfig(url=judge.url, timeout_s=120), judge.url, None, image_side=28)
        with pytest.raises(ConfigError, match=r"judge.timeout_s is 60 s but .* request_timeout_s of 100 s"):
            check_judge(JudgeConfig(url=judge.url, timeout_s=60), judge.url, None)
        with pytest.raises(ConfigError, match=r"data.crop_size is 24 px but the judge service .* needs images of at least 28 px"):
            check_judge(JudgeConfig(url=judge.url), judge.url, None, image_side=24)


@pytest.mark.parametrize("fault, status", [("malformed", "502"), ("too slow", "504")])
def test_judge_service_faults_follow_judge_on_outage(fault, status):
    """A malformed backend answer (502) or a backend past the request deadline (504) is an outage
    of the judge: the run's judge.on_outage decides, never a traceback and never a made-up score."""
    n = 4
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    inputs = dict(restored=images, reference=images, degraded=images, tasks=["denoise"] * n, group_size=2)
    backend = ScriptedBackend(answer={"choices": [{"message": {"content": 5}}]}) if fault == "malformed" else ScriptedBackend(logprobs=FAST, drip_s=0.05)
    settings = dict(timeout_s=0.3, request_timeout_s=0.8) if fault == "too slow" else {}
    with backend, ThreadedServer(create_app(JudgeSettings(backend_url=backend.url, model="judge-model", **settings))) as judge:
        def scorer(policy):
            s = Scorer(RewardConfig(), JudgeConfig(url=judge.url, retries=1, on_outage=policy))
            s.reward = SimpleNamespace(score_batch=lambda *a, **k: [SimpleNamespace(terms={"psnr": 0.5, "ssim": 1.0}, metrics={})] * n)
            return s

        dropped = scorer("drop").score(**inputs)
        with pytest.raises(JudgeOutage, match=f"judge.on_outage is 'stop'.*{status}"):
            scorer("stop").score(**inputs)
    assert dropped.judge_dropped == n
    without_judge = combine_rewards({"psnr": 0.5, "ssim": 1.0, "judge": None})[0]  # weights renormalised
    torch.testing.assert_close(dropped.rewards, torch.full((n,), without_judge))


def test_a_reward_service_that_does_not_fit_the_run_is_refused_at_start():
    limits = {"request_timeout_s": 60.0, "min_side_for_weights": 32}
    check_fit("reward", "http://r", 90.0, limits["request_timeout_s"], limits["min_side_for_weights"], 32)
    with pytest.raises(ConfigError, match=r"reward.timeout_s is 60 s but .* request_timeout_s of 60 s.*REWARD_SERVER_REQUEST_TIMEOUT_S"):
        check_fit("reward", "http://r", 60.0, limits["request_timeout_s"], limits["min_side_for_weights"], None)
    with pytest.raises(ConfigError, match=r"data.crop_size is 16 px but the reward service .* at least 32 px"):
        check_fit("reward", "http://r", 90.0, limits["request_timeout_s"], limits["min_side_for_weights"], 16)


def test_a_weighted_term_the_service_cannot_compute_stops_the_run_at_start():
    unavailable = {"hps": "no human-preference model configured (hps_model)"}
    check_terms(RewardConfig().weights, "http://r", unavailable)  # hps weighs 0 by default
    lrpo = RewardConfig(weights={"hps": 1.0, "ssim": 1.0}).weights
    check_terms(lrpo, "http://r", {})
    with pytest.raises(ConfigError, match=r"weights \['hps'\] but the reward service at http://r cannot compute them \(hps: no human-preference"):
        check_terms(lrpo, "http://r", unavailable)
