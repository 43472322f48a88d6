"""The learner's objective for the diffusion family, without Ray: per-step PPO against the recorded
log-probs (ratio 1 at the first update of a fresh run), step-wise advantages, the seed-2 and LRPO
terms, and exact state restore."""

import pytest
import torch

from tests.trainer.learner_fixtures import assert_restore_is_exact
from trainer.actors.learner import Learner
from trainer.actors.messages import Rollout
from trainer.actors.rollout import sampling_seed
from trainer.config import DiffusionRLConfig, TrainConfig
from trainer.grpo.step_losses import StepLossCoefs, step_groups, step_grpo_loss
from trainer.policies.diffusion.objective import step_advantages, train_steps

TINY = {"block_out_channels": [16, 32], "sampling_steps": 4}


def _cfg(rl=None, precision="fp32", **grpo) -> TrainConfig:
    return TrainConfig.model_validate({"policy": {"kind": "diffusion", "diffusion": {**TINY, "precision": precision, "rl": rl or {}}},
                                       "grpo": {"group_size": 4, **grpo}, "optim": {"lr": 1e-3}, "rollout": {"images_per_worker": 2}})


def _rollout(learner: Learner, step: int = 0, b: int = 2, g: int = 4, side: int = 16, scale: int = 1) -> Rollout:
    """A scored rollout of random images; `scale` 4: the sr task's input, the target downscaled 4x."""
    gen = torch.Generator().manual_seed(step)
    target = torch.rand(b, 3, side, side, generator=gen)
    small = torch.nn.functional.interpolate(target, scale_factor=1 / scale, mode="area") if scale > 1 else target
    degraded = (small + 0.1 * torch.randn(small.shape, generator=gen)).clamp(0, 1)
    s = learner.policy.sample(degraded, g, generator=gen)
    ref = target.repeat_interleave(g, 0)

    def reward(images):
        return -(images.clamp(0, 1) - ref).abs().flatten(1).mean(1).view(b, g)

    est = None if s.estimates is None else torch.stack([reward(e) for e in s.estimates.unbind(1)], dim=2)
    return Rollout(step=step, version=learner.version, ids=[f"img{i}" for i in range(b)], tasks=["sr" if scale > 1 else "denoise"] * b, degraded=degraded,
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


def _gradient(precision: str) -> torch.Tensor:
    """The unscaled flat gradient of one pure-RL step (sft_coef 0: the smallest gradients) under the denoiser's precision."""
    torch.manual_seed(0)
    learner = Learner(_cfg({"sft_coef": 0.0}, precision), total_steps=1)
    _, step_loss = learner.objective(learner, _rollout(learner))
    learner._backward(step_loss, 0, 2, 0)
    learner.scaler.unscale_(learner.optimizer)
    return torch.cat([p.grad.flatten() for p in learner.policy.parameters() if p.grad is not None])


def test_fp16_autocast_scales_the_loss_so_no_gradient_underflows_and_restores_its_scale():
    g32, g16 = _gradient("fp32"), _gradient("fp16")
    # unscaled, 0.02% of this gradient's non-zero elements round to 0 in fp16 (measured; docs/benchmarks.md, issue 21)
    assert ((g16 == 0) & (g32 != 0)).sum() == 0
    assert (g16 - g32).norm() / g32.norm() < 1e-2
    sa, state = assert_restore_is_exact(_cfg({"sft_coef": 0.0}, "fp16"), lambda learner, step: _rollout(learner, step=step))
    assert state["scaler"]["scale"] == sa["loss_scale"] == 2.0**16  # torch.amp's initial scale, no overflow


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


def test_train_steps_picks_a_share_of_the_stochastic_steps_at_random_or_in_a_sliding_window():
    def gen(seed):
        return torch.Generator().manual_seed(seed)

    half = DiffusionRLConfig(train_step_fraction=0.5)
    picked = train_steps(9, half, 0, gen(1))
    assert picked.numel() == 4 and picked.tolist() == sorted(set(picked.tolist())) and 0 <= int(picked.min()) and int(picked.max()) <= 8
    assert torch.equal(train_steps(9, half, 0, gen(1)), picked)  # the same draw from the same (seed, step)
    assert len({tuple(train_steps(9, half, 0, gen(s)).tolist()) for s in range(10)}) > 1
    window = DiffusionRLConfig(train_step_fraction=0.5, train_step_selection="window")
    assert [train_steps(9, window, u, gen(0)).tolist() for u in (0, 1, 5, 6)] == [[0, 1, 2, 3], [1, 2, 3, 4], [5, 6, 7, 8], [0, 1, 2, 3]]
    assert train_steps(9, DiffusionRLConfig(), 3, gen(0)).tolist() == list(range(9))
    assert train_steps(3, DiffusionRLConfig(train_step_fraction=0.1), 0, gen(0)).tolist() in ([0], [1], [2])


def test_a_step_fraction_trains_only_the_chosen_steps_of_each_sampled_chain():
    """rl.train_step_fraction 2/3 of 3 stochastic steps: the policy and the reference re-evaluate the 2 steps that
    train_steps draws from (seed, step), and the gradient is that of the surrogate over those steps alone."""
    rl = {"train_step_fraction": 0.67, "noise_level_weighting": "linear", "sft_coef": 0.0, "kl_coef": 0.0}
    torch.manual_seed(0)
    learner = Learner(_cfg(rl), total_steps=1)
    rollout = _rollout(learner, step=5)
    calls = []

    def spy(model):
        evaluate = model.evaluate

        def recorded(x, traj, steps=None):
            calls.append((model is learner.policy, None if steps is None else steps.tolist()))
            return evaluate(x, traj, steps)

        model.evaluate = recorded

    spy(learner.policy)
    spy(learner.reference)
    params = [p for p in learner.policy.parameters() if p.requires_grad]
    want = train_steps(3, learner.cfg.policy.diffusion.rl, 5, torch.Generator().manual_seed(sampling_seed("diffusion_train_steps", learner.cfg.seed, 5)))
    adv, step_loss = learner.objective(learner, rollout)
    learner._backward(step_loss, 0, 2, 5)
    got = [p.grad.clone() for p in params]
    assert want.numel() == 2 and {c[0] for c in calls} == {True, False} and all(c[1] == want.tolist() for c in calls)
    full = step_advantages(rollout.ids, rollout.rewards, None, rollout.trajectory, learner.policy, learner.cfg.policy.diffusion.rl, learner.normalise)
    torch.testing.assert_close(adv, full[:, want])
    # the PPO surrogate (ratio 1 at a fresh run's first update: the unclipped branch) written out on the chosen steps
    learner.policy.zero_grad()
    ev = learner.policy.evaluate(rollout.degraded, rollout.trajectory, want)
    (-(torch.exp(ev.log_prob - rollout.trajectory.log_prob[:, want]) * full[:, want])).mean().backward()
    for g, p in zip(got, params):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-8)
    learner.policy.zero_grad()
    ev = learner.policy.evaluate(rollout.degraded, rollout.trajectory)
    (-(torch.exp(ev.log_prob - rollout.trajectory.log_prob) * full)).mean().backward()
    assert any(not torch.allclose(g, p.grad, rtol=1e-3) for g, p in zip(got, params))  # every step would train otherwise
