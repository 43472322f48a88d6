"""The learner's objective for the diffusion family, without Ray: per-step PPO against the recorded
log-probs (ratio 1 at the first update of a fresh run), step-wise advantages, the seed-2 and LRPO
terms, and exact state restore."""

import pytest
import torch

from tests.trainer.learner_fixtures import assert_restore_is_exact
from trainer.actors.learner import Learner
from trainer.actors.messages import Rollout
from trainer.config import TrainConfig
from trainer.grpo.step_losses import StepLossCoefs, step_groups, step_grpo_loss

TINY = {"block_out_channels": [16, 32], "sampling_steps": 4}


def _cfg(rl=None, **grpo) -> TrainConfig:
    return TrainConfig.model_validate({"policy": {"kind": "diffusion", "diffusion": {**TINY, "rl": rl or {}}},
                                       "grpo": {"group_size": 4, **grpo}, "optim": {"lr": 1e-3}, "rollout": {"images_per_worker": 2}})


def _rollout(learner: Learner, step: int = 0, b: int = 2, g: int = 4) -> Rollout:
    gen = torch.Generator().manual_seed(step)
    target = torch.rand(b, 3, 16, 16, generator=gen)
    degraded = (target + 0.1 * torch.randn(b, 3, 16, 16, generator=gen)).clamp(0, 1)
    s = learner.policy.sample(degraded, g, generator=gen)
    ref = target.repeat_interleave(g, 0)

    def reward(images):
        return -(images.clamp(0, 1) - ref).abs().flatten(1).mean(1).view(b, g)

    est = None if s.estimates is None else torch.stack([reward(e) for e in s.estimates.unbind(1)], dim=2)
    return Rollout(step=step, version=learner.version, ids=[f"img{i}" for i in range(b)], tasks=["denoise"] * b, degraded=degraded,
                   target=target, trajectory=s.trajectory, rewards=reward(s.images), terms={}, estimate_rewards=est, estimate_steps=s.estimate_steps)


def test_first_update_of_a_fresh_run_has_ratio_one_per_step_and_moves_the_policy():
    torch.manual_seed(0)
    learner = Learner(_cfg(), total_steps=2)
    before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    stats, packet = learner.update(_rollout(learner))
    weights = packet.tensors()
    for name in ("ratio/max", "ratio/min", "ratio/steps0-0/mean", "ratio/steps2-2/mean"):
        assert stats[name] == pytest.approx(1.0, abs=1e-5), name
    assert stats["clip_fraction"] == 0.0 and stats["kl"] == 0.0 and stats["kl/steps1-1"] == 0.0
    assert any(not torch.equal(before[k], weights[k]) for k in before)
    # a second rollout sampled by the old version meets the updated policy: the ratio moves, the KL grows
    stale = Rollout(**{**_rollout(learner, step=1).__dict__, "version": 0})
    learner.policy.load_state_dict(weights)
    stats2, _ = learner.update(stale)
    assert stats2["kl"] > 0


def test_stepwise_rewards_give_each_step_the_advantage_of_the_estimate_it_leads_to():
    cfg = _cfg({"reward_at": "stepwise", "reward_steps": [0], "sft_coef": 0.0})
    learner = Learner(cfg, total_steps=1)
    rollout = _rollout(learner)
    assert rollout.estimate_rewards.shape == (2, 4, 1)
    # the final rewards constant within each group: steps after the estimate get zero advantage
    rollout.rewards = torch.zeros(2, 4)
    adv, _ = learner.objective(learner, rollout)
    assert adv.shape == (8, 3)
    assert adv[:, 1:].abs().max() == 0 and adv[:, 0].abs().max() > 0


def test_adaptive_weights_gt_likelihood_and_history_batch_restore_exactly():
    cfg = _cfg({"adaptive_weighting": True, "gt_likelihood_coef": 1e-3, "noise_level_weighting": "linear"},
               advantage="history_batch", history_min_count=4, history_buffer=8, ppo_epochs=2)
    sa, state = assert_restore_is_exact(cfg, lambda learner, step: _rollout(learner, step=step))
    assert sorted(state["tracker"]["history"]) == ["img0", "img1"] and len(state["tracker"]["history"]["img0"]) == 4
    assert 0 < sa["adaptive_weight/mean"] <= 1 and "loss/gt_log_prob" in sa
    assert abs(sa["ratio/max"] - 1) > 1e-6  # the second PPO epoch sees the first one's update


def test_step_loss_weights_rl_and_sft_per_image_and_checks_shapes():
    n, s = 4, 3
    zeros = torch.zeros(n, s)
    adv = torch.tensor([[1.0] * s, [-1.0] * s, [2.0] * s, [0.0] * s])
    sft = torch.tensor([0.5, 2.0])
    coefs = StepLossCoefs(clip_eps=0.2, kl=0.0, sft=1.0, gt_likelihood=0.0)
    # ratio 1: the surrogate is -A, per image the mean over its 2 candidates and 3 steps
    loss, _ = step_grpo_loss(log_prob=zeros, old_log_prob=zeros, advantages=adv, kl=zeros, sft_loss=sft, coefs=coefs)
    assert loss.item() == pytest.approx(((0.0 + 0.5) + (-1.0 + 2.0)) / 2)
    w = torch.tensor([1.0, 0.0])  # image 0 all RL, image 1 all SFT
    loss, stats = step_grpo_loss(log_prob=zeros, old_log_prob=zeros, advantages=adv, kl=zeros, sft_loss=sft, coefs=coefs, sample_weights=w)
    assert loss.item() == pytest.approx((0.0 + 2.0) / 2) and stats["adaptive_weight/mean"] == 0.5
    with pytest.raises(ValueError, match="advantages must be"):
        step_grpo_loss(log_prob=zeros, old_log_prob=zeros, advantages=adv[:, :1], kl=zeros, sft_loss=sft, coefs=coefs)
    assert step_groups(9) == [(0, 3), (3, 6), (6, 9)] and step_groups(2) == [(0, 1), (1, 2)]


def test_per_term_aggregation_reaches_every_step():
    learner = Learner(_cfg(reward_aggregation="per_term"), total_steps=1)
    rollout = _rollout(learner)
    rollout.rewards = torch.zeros(2, 4)
    rollout.terms = {"psnr": torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.2, 0.3, 0.1, 0.4]])}
    adv, _ = learner.objective(learner, rollout)
    assert adv.shape == (8, 3) and torch.equal(adv[:, 0], adv[:, 2]) and adv.abs().min() > 0
