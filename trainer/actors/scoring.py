"""Scoring a rollout's candidates: the reward service and the judge service, called concurrently.

The reward service returns the per-term rewards (R_gen's terms and R_task); the judge adds R_judge;
R is combined once, here, with the shared irpo_common.reward_spec.combine_rewards and reward.weights
(the service's own `reward` cannot hold the judge term and is not used). A judge that stays
unreachable or refusing (5xx after retries, or a 4xx) follows judge.on_outage: 'stop' raises JudgeOutage, 'drop' scores without the judge term
(weights renormalised) and counts the candidates. A judge answer without a score (unparsed) drops
the term for every candidate of that image's group (see drop_judge_per_group), also counted. Never a
made-up score.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import torch

from irpo_common.reward_spec import RewardWeights, combine_rewards
from judge_server.client import JudgeClient, JudgeRequestError, JudgeUnavailable
from reward_server.client import RewardClient, RewardRequestError, RewardServiceUnavailable
from trainer.config import ConfigError, JudgeConfig, RewardConfig


class ServiceUnavailable(RuntimeError):
    """The reward service stayed unreachable through its client's retries (the step may be retried)."""


class JudgeOutage(RuntimeError):
    """The judge stayed unreachable or refused the batch, and judge.on_outage is 'stop'."""


@dataclass
class Scored:
    rewards: torch.Tensor  # (N,) combined R
    terms: dict[str, torch.Tensor]  # term -> (N,), NaN where not computed
    metrics: dict[str, torch.Tensor]  # the service's raw metric -> (N,) (LPIPS distance, PSNR in dB, ...), NaN where not computed
    judge_dropped: int  # candidates scored without the judge term because the judge was down ('drop' policy)
    judge_unscored: int  # candidates whose judge answer held no score (term dropped for their whole group)
    times: dict[str, float]  # reward, judge, score (wall of both together)


def _token(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"token_env {env_name!r} is set in the config but that environment variable is empty or missing")
    return value


def check_services(reward: RewardConfig, judge: JudgeConfig, image_side: int | None = None) -> list[str]:
    """Stop before any work when a configured service is not ready or a setting is wrong;
    `image_side` is the side of the images the run will send (its training crops), when known.

    Returns the reward terms the service computes with RANDOM model weights (its development flag).
    """
    token = _token(reward.token_env)
    judge_token = _token(judge.token_env)
    problems = unreachable(reward, judge)
    if problems:
        raise ServiceUnavailable(f"{'; '.join(problems)}: start them or fix reward.url(s) / judge.url(s)")
    random_terms: set[str] = set()
    for url in reward.endpoints:  # every replica must fit the run: requests may go to any of them
        with RewardClient(url, token=token, timeout_s=reward.timeout_s, retries=0) as client:
            try:
                info = client.info()
            except (RewardRequestError, RewardServiceUnavailable) as exc:
                raise ServiceUnavailable(f"the reward service at {url} refused /v1/info: {exc}") from None
        limits = info.get("limits") or {}
        check_fit("reward", url, reward.timeout_s, limits.get("request_timeout_s"), limits.get("min_side_for_weights"), image_side)
        check_terms(reward.weights, url, info.get("unavailable_terms") or {})
        served = tuple(info.get("psnr_range_db") or ())
        if reward.psnr_range_db is not None and served != tuple(reward.psnr_range_db):
            raise ConfigError(f"reward.psnr_range_db is {list(reward.psnr_range_db)} but the reward service at {url} maps PSNR over {list(served)}: start it with REWARD_SERVER_PSNR_RANGE_DB='{list(reward.psnr_range_db)}' or unset reward.psnr_range_db")
        random_terms.update(info.get("random_weights") or [])
    for url in judge.endpoints:
        check_judge(judge, url, judge_token, image_side)
    return sorted(random_terms)


def check_terms(weights: RewardWeights, url: str, unavailable: dict[str, str]) -> None:
    """A generic term the run weights but the service has no model for (its /v1/info `unavailable_terms`, e.g. hps
    without hps_model) stops the run before any work: the service would refuse every request that weights it."""
    missing = {t: why for t, why in unavailable.items() if weights.gen > 0 and getattr(weights, t, 0.0) > 0}
    if missing:
        raise ConfigError(f"reward.weights weights {sorted(missing)} but the reward service at {url} cannot compute them "
                          f"({'; '.join(f'{t}: {why}' for t, why in missing.items())}): configure the service's model or set the weight to 0")


def unreachable(reward: RewardConfig, judge: JudgeConfig) -> list[str]:
    """Every configured service replica that does not answer /readyz with 200 from this process, with
    the reason (the driver checks at start, and so does each rollout actor: a URL the head reaches
    may be one a worker node cannot)."""
    out = []
    for name, urls in (("reward", reward.endpoints), ("judge", judge.endpoints)):
        for url in urls:
            try:
                status = httpx.get(f"{url.rstrip('/')}/readyz", timeout=10.0).status_code
            except httpx.HTTPError as exc:
                out.append(f"the {name} service at {url} is not reachable ({type(exc).__name__}: {exc})")
                continue
            if status != 200:
                out.append(f"the {name} service at {url} is not ready (/readyz answered {status})")
    return out


def check_fit(service: str, url: str, timeout_s: float, deadline, min_side, image_side: int | None) -> None:
    """The run and a service (as its /v1/info reports it) fit each other. The service answers
    within its request_timeout_s; a client that gives up sooner resends work the service is still
    doing (one item then costs several times the work). Images under the service's minimum side
    would be refused or lose terms on every step."""
    if isinstance(deadline, (int, float)) and timeout_s <= deadline:
        raise ConfigError(f"{service}.timeout_s is {timeout_s:g} s but the {service} service at {url} may take up to its request_timeout_s of {deadline:g} s: set {service}.timeout_s above it (or lower {service.upper()}_SERVER_REQUEST_TIMEOUT_S)")
    if image_side is not None and isinstance(min_side, int) and image_side < min_side:
        raise ConfigError(f"data.crop_size is {image_side} px but the {service} service at {url} needs images of at least {min_side} px (what its models take): use crops of at least {min_side} px")


def check_judge(judge: JudgeConfig, url: str, token: str | None, image_side: int | None = None) -> None:
    """The judge service (one replica) answers /v1/info and fits the run (check_fit)."""
    with JudgeClient(url, token=token, timeout_s=judge.timeout_s, retries=0) as client:
        try:
            info = client.info()
        except (JudgeRequestError, JudgeUnavailable) as exc:
            raise ServiceUnavailable(f"the judge service at {url} refused /v1/info: {exc}") from None
    check_fit("judge", url, judge.timeout_s, info.get("request_timeout_s"), info.get("min_image_side"), image_side)


def drop_judge_per_group(judge_rewards: list[float | None], group_size: int) -> list[float | None]:
    """Drop R_judge for a whole group when any of its answers held no score.

    Candidates of one image are compared with each other (advantages, the best candidate), so they
    must share one reward scale: without the judge term R is renormalised onto the other terms,
    which differs from the group-mates' R by more than the group's spread. Filling in the group's
    mean judge score instead would keep the scale but invent a score, which the trainer never does.
    """
    if len(judge_rewards) % group_size:
        raise ValueError(f"{len(judge_rewards)} judge answers do not split into groups of {group_size}")
    out = list(judge_rewards)
    for start in range(0, len(out), group_size):
        if any(r is None for r in out[start : start + group_size]):
            out[start : start + group_size] = [None] * group_size
    return out


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _columns(rows: list[dict[str, float]]) -> dict[str, torch.Tensor]:
    """Per-item dicts -> name -> (N,) tensor, NaN where an item lacks the name."""
    names = sorted(set().union(*rows))
    return {k: torch.tensor([row.get(k, float("nan")) for row in rows]) for k in names}


class Scorer:
    """Thread-safe: a rollout actor scores up to `concurrency` rollouts at once."""

    def __init__(self, reward: RewardConfig, judge: JudgeConfig, concurrency: int = 1):
        self.weights = reward.weights
        self.reward = RewardClient(reward.endpoints, token=_token(reward.token_env), timeout_s=reward.timeout_s, retry_for_s=reward.retry_for_s)
        self.judge_cfg = judge
        self.judge = JudgeClient(judge.endpoints, token=_token(judge.token_env), timeout_s=judge.timeout_s, retries=judge.retries) if judge.endpoints else None
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="judge")

    def score(self, restored: torch.Tensor, reference: torch.Tensor, degraded: torch.Tensor, tasks: list[str], *, group_size: int) -> Scored:
        """Score N candidates (N, 3, H, W) in [0, 1], image-major in groups of group_size; reward and judge requests run at the same time."""
        t0 = time.perf_counter()
        judge_job = None
        if self.judge is not None:  # the judge in a pool thread, the reward service in this one
            others = (None, None) if self.judge_cfg.mode == "iqa" else (degraded, reference)  # iqa rates the output alone
            judge_job = self._pool.submit(_timed, self.judge.judge_batch, others[0], restored, others[1], tasks=tasks, mode=self.judge_cfg.mode)
        try:
            results, reward_s = _timed(self.reward.score_batch, restored, reference=reference, degraded=degraded, tasks=tasks)
        except RewardServiceUnavailable as exc:
            raise ServiceUnavailable(f"reward service: {exc}") from None
        n = restored.shape[0]
        judge_rewards: list[float | None] = [None] * n
        judge_s = 0.0
        dropped = unscored = 0
        if judge_job is not None:
            try:
                answers, judge_s = judge_job.result()
                unscored = sum(a.reward is None for a in answers)
                judge_rewards = drop_judge_per_group([a.reward for a in answers], group_size)
            except (JudgeUnavailable, JudgeRequestError) as exc:  # a refusal too: the run's policy decides, not a traceback
                if self.judge_cfg.on_outage == "stop":
                    raise JudgeOutage(f"judge service failed and judge.on_outage is 'stop': {exc}") from None
                dropped = n
        rewards = []
        term_rows: list[dict[str, float]] = []
        for item, judge_reward in zip(results, judge_rewards):
            terms = {k: v for k, v in item.terms.items()}
            terms["judge"] = judge_reward
            reward, _ = combine_rewards(terms, self.weights)
            rewards.append(reward)
            term_rows.append({k: v for k, v in terms.items() if v is not None})
        return Scored(
            rewards=torch.tensor(rewards),
            terms=_columns(term_rows),
            metrics=_columns([item.metrics for item in results]),
            judge_dropped=dropped,
            judge_unscored=unscored,
            times={"reward": reward_s, "judge": judge_s, "score": time.perf_counter() - t0},
        )
