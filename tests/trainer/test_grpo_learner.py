"""The learner's GRPO update on a real (tiny) policy, without Ray: old log-probs from sampling,
PPO epochs, the history advantage, difficulty-adaptive weighting and exact state restore."""

import pytest
import torch

from tests.trainer.learner_fixtures import assert_restore_is_exact
from trainer.actors.learner import Learner
from trainer.actors.messages import Rollout
from trainer.config import TrainConfig
from trainer.model.presets import MICRO


def _cfg(**grpo) -> TrainConfig:
    # two images per step, as in _rollout
    return TrainConfig.model_validate({"model": MICRO, "grpo": {"group_size": 4, **grpo}, "optim": {"lr": 1e-3}, "rollout": {"images_per_worker": 2}})


def _rollout(learner: Learner, step: int = 0, b: int = 2, g: int = 4) -> Rollout:
    gen = torch.Generator().manual_seed(step)
    target = torch.rand(b, 3, 16, 16, generator=gen)
    degraded = (target + 0.1 * torch.randn(b, 3, 16, 16, generator=gen)).clamp(0, 1)
    sample = learner.policy.sample(degraded, g, generator=gen)
    rewards = -(sample.images.clamp(0, 1) - target.repeat_interleave(g, 0)).abs().flatten(1).mean(1).view(b, g)
    return Rollout(step=step, version=learner.version, ids=[f"img{i}" for i in range(b)], tasks=["denoise"] * b,
                   degraded=degraded, target=target, trajectory=sample.trajectory,
                   rewards=rewards, terms={})


def test_update_uses_recorded_log_probs_and_publishes_a_new_version():
    learner = Learner(_cfg(ppo_epochs=2), total_steps=4)
    before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    stats, packet = learner.update(_rollout(learner))
    weights = packet.tensors()
    assert learner.version == 1
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    # the second PPO epoch sees the policy moved by the first: the ratio is no longer 1
    assert abs(stats["ratio/max"] - 1) > 1e-6 or abs(stats["ratio/min"] - 1) > 1e-6
    assert any(not torch.equal(before[k], weights[k]) for k in before)
    assert stats["lr/heads"] == pytest.approx(6 * stats["lr/backbone"])


def test_history_advantage_and_adaptive_weighting_run_and_restore_exactly():
    cfg = _cfg(advantage="history", history_min_count=4, history_buffer=8, adaptive_weighting=True)
    sa, state = assert_restore_is_exact(cfg, lambda learner, step: _rollout(learner, step=step))
    assert sorted(state["tracker"]["history"]) == ["img0", "img1"] and len(state["tracker"]["history"]["img0"]) == 4
    assert 0 < sa["adaptive_weight/mean"] <= 1


def test_restoring_a_history_run_from_a_group_run_is_refused():
    state = Learner(_cfg(), total_steps=1).state()
    with pytest.raises(ValueError, match="no advantage history"):
        Learner(_cfg(advantage="history"), total_steps=1).load_state(state)


def test_per_term_aggregation_drives_the_update_by_the_terms_not_r():
    cfg = _cfg(reward_aggregation="per_term")
    learner = Learner(cfg, total_steps=1)
    rollout = _rollout(learner)
    # R is constant within each group (no signal), the terms are not: per-term advantages come from the terms
    rollout.rewards = torch.zeros(2, 4)
    rollout.terms = {"psnr": torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.2, 0.2, 0.2, 0.2]]), "task": torch.tensor([[0.5, 0.4, 0.6, 0.5], [0.3, 0.1, 0.2, 0.4]])}
    adv, _ = learner.objective(learner, rollout)
    assert adv.abs().max() > 0
    plain = Learner(_cfg(), total_steps=1)
    adv_sum, _ = plain.objective(plain, rollout)
    assert adv_sum.abs().max() == 0
