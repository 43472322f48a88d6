"""The RL maths of the diffusion family around the step: credit of step-wise rewards, the clip before the
noise-level weights, reward_steps validation, the chain's timesteps, LRPO's per-step GT term, the
summed log-density's trust region, and the domain of sampling seeds."""

from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from trainer.actors.rollout import sampling_seed
from trainer.config import DiffusionConfig, DiffusionRLConfig
from trainer.grpo import ppo_clip_objective
from trainer.policies import build_policy
from trainer.policies.diffusion.credit import credit_matrix, group_normaliser, noise_level_weights
from trainer.policies.diffusion.ddim import ddim_mean, ddim_std, gaussian_kl_same_std, gt_step_kl_per_weight, gt_step_mean, gt_step_weight
from trainer.policies.diffusion.objective import gt_step_log_prob, step_advantages, step_loss_coefs
from trainer.policies.diffusion.schedule import Schedule


def test_reward_to_go_gives_every_step_the_final_reward_and_the_later_estimates():
    m = credit_matrix(torch.tensor([2, 5]), 9, "to_go")  # columns: estimate after step 2, after step 5, final
    torch.testing.assert_close(m[0], torch.tensor([1 / 3, 1 / 3, 1 / 3]))
    torch.testing.assert_close(m[2], torch.tensor([1 / 3, 1 / 3, 1 / 3]))  # step 2's own estimate counts
    torch.testing.assert_close(m[3], torch.tensor([0.0, 0.5, 0.5]))
    torch.testing.assert_close(m[6], torch.tensor([0.0, 0.0, 1.0]))
    assert bool((m[:, -1] > 0).all())


def test_next_estimate_credit_is_kept_beside_it():
    m = credit_matrix(torch.tensor([2, 5]), 9, "next")
    assert m.argmax(dim=1).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and bool((m.max(dim=1).values == 1).all())
    assert torch.equal(credit_matrix(torch.tensor([], dtype=torch.long), 4, "to_go"), torch.ones(4, 1))
    assert DiffusionRLConfig().step_credit == "to_go"


@pytest.mark.parametrize("steps", [[5, 2], [2, 2], [0, 9]])
def test_reward_steps_must_be_sorted_unique_stochastic_steps(steps):
    with pytest.raises(ValidationError, match="reward_steps"):
        DiffusionConfig(sampling_steps=10, rl={"reward_at": "stepwise", "reward_steps": steps})
    DiffusionConfig(sampling_steps=10, rl={"reward_at": "stepwise", "reward_steps": [0, 2, 8]})


def _advantages(mode: str, rewards: torch.Tensor, adv_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    schedule = Schedule(DiffusionConfig(sampling_steps=10))
    t = schedule.timesteps(10)
    traj = SimpleNamespace(log_prob=torch.zeros(rewards.numel(), 9), timesteps=t, estimate_steps=torch.tensor([], dtype=torch.long))
    rl = DiffusionRLConfig(noise_level_weighting=mode, adv_clip=adv_clip)
    adv = step_advantages(["a"], rewards, None, traj, SimpleNamespace(schedule=schedule), rl, group_normaliser(1e-6))
    return adv, noise_level_weights(t[:9], schedule.alpha_bar(t[:9]), 1000, mode)


def test_advantages_are_clipped_before_the_noise_level_weights():
    adv, w = _advantages("snr", torch.tensor([[0.0, 0.0, 0.0, 1.0]]), adv_clip=1.0)  # normalised: -0.58 x3, +1.73
    assert w[-1] > 5  # the last (cleanest) step dominates under 'snr'
    torch.testing.assert_close(adv[3], w)  # the clipped advantage 1 times each step's weight: the shape is kept
    torch.testing.assert_close(adv[0], -0.5773 * w, rtol=1e-3, atol=0)


def test_linear_weights_are_proportional_to_t():
    schedule = Schedule(DiffusionConfig(sampling_steps=10))
    t = schedule.timesteps(10)[:9]
    w = noise_level_weights(t, schedule.alpha_bar(t), 1000, "linear")
    torch.testing.assert_close(w, t.float() / t.float().mean())


@pytest.mark.parametrize("train_timesteps", [1000, 100, 37])
@pytest.mark.parametrize("k", [2, 3, 6, 7, 10, 12])
def test_each_step_lands_on_the_next_steps_timestep_and_only_the_last_is_noiseless(train_timesteps, k):
    schedule = Schedule(DiffusionConfig(train_timesteps=train_timesteps, sampling_steps=k))
    t = schedule.timesteps(k)
    prev = schedule.prev_timesteps(t)
    assert torch.equal(prev[:-1], t[1:]) and prev[-1] == -1
    sigma = ddim_std(schedule.alpha_bar(t), schedule.alpha_bar(prev), 1.0)
    assert bool((sigma[:-1] > 0).all()) and sigma[-1] == 0


def test_gt_step_weight_turns_the_gt_log_density_into_the_x0_error_at_every_step():
    schedule = Schedule(DiffusionConfig(sampling_steps=10))
    t = schedule.timesteps(10)[:9]
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(schedule.prev_timesteps(schedule.timesteps(10))[:9])
    std = ddim_std(a_t, a_prev, 1.0).view(-1, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    gt, x0, noise = (torch.randn(9, 3, 8, 8, generator=g).clamp(-1, 1) for _ in range(3))
    a = a_t.view(-1, 1, 1, 1)
    x_t = a.sqrt() * gt + (1 - a).sqrt() * noise
    eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    raw = gaussian_kl_same_std(gt_step_mean(x_t, gt, a_t, a_prev, std), ddim_mean(x0, eps, a_prev, std), std)
    w = gt_step_weight(a_t, a_prev, std)
    torch.testing.assert_close(raw / w, (x0 - gt).double().pow(2).flatten(1).mean(1), rtol=1e-5, atol=0)
    assert w[0] < 1e-3 and w[-1] > 1 and bool((w[1:] > w[:-1]).all())  # the raw term is ~all on the last steps


@pytest.mark.parametrize("norm", ["per_step", "none"])
def test_gt_likelihood_term_weighs_every_step_alike_when_normalised(norm):
    torch.manual_seed(0)
    policy = build_policy(DiffusionConfig(block_out_channels=[16, 32], sampling_steps=4, clip_x0=False,
                                          rl={"gt_likelihood_norm": norm})).eval()
    x, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    traj = policy.sample(x, 2, torch.Generator().manual_seed(1)).trajectory
    with torch.no_grad():
        ev = policy.evaluate(x, traj)
        term = gt_step_log_prob(policy, x, target, traj, ev)
    x0_error = (ev.x0 - policy.codec.encode(target)).pow(2).flatten(2).mean(2)  # (N, S)
    if norm == "per_step":
        torch.testing.assert_close(term, -x0_error, rtol=1e-4, atol=1e-6)
    else:
        assert not torch.allclose(term, -x0_error, rtol=1e-2)


def test_gt_kl_per_weight_is_the_step_means_kl_over_the_weight_with_a_clamp():
    schedule = Schedule(DiffusionConfig(sampling_steps=10))
    t = schedule.timesteps(10)[:9]
    a_t, a_prev = schedule.alpha_bar(t).double(), schedule.alpha_bar(schedule.prev_timesteps(schedule.timesteps(10))[:9]).double()
    std = ddim_std(a_t, a_prev, 1.0).double().view(-1, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    gt, noise = torch.randn(9, 3, 8, 8, generator=g, dtype=torch.float64).clamp(-1, 1), torch.randn(9, 3, 8, 8, generator=g, dtype=torch.float64)
    x0_raw = 1.5 * torch.randn(9, 3, 8, 8, generator=g, dtype=torch.float64)  # a third of it beyond [-1, 1]
    a = a_t.view(-1, 1, 1, 1)
    x_t = a.sqrt() * gt + (1 - a).sqrt() * noise
    eps = (x_t - a.sqrt() * x0_raw) / (1 - a).sqrt()  # the clamp leaves eps_hat as predicted (diffusers)
    mean = a_prev.view(-1, 1, 1, 1).sqrt() * x0_raw.clamp(-1, 1) + (1 - a_prev.view(-1, 1, 1, 1) - std**2).sqrt() * eps
    want = gaussian_kl_same_std(gt_step_mean(x_t, gt, a_t, a_prev, std), mean, std) / gt_step_weight(a_t, a_prev, std)
    got = gt_step_kl_per_weight(x0_raw, x0_raw.clamp(-1, 1), gt, a_t, a_prev, std)
    torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=0)


def test_gt_term_keeps_float32_accuracy_when_x0_is_near_the_ground_truth():
    # A trained denoiser's x0_hat lies close to GT; the step means then differ by k (x0_hat - GT), k ~ 1e-2 at the
    # first step, and differencing the float32 means before dividing by k lost 4e-4 of the term there.
    torch.manual_seed(0)
    policy = build_policy(DiffusionConfig(block_out_channels=[16, 32], sampling_steps=10, clip_x0=False)).eval()
    x = torch.rand(1, 3, 16, 16)
    traj = policy.sample(x, 1, torch.Generator().manual_seed(1)).trajectory
    with torch.no_grad():
        ev = policy.evaluate(x, traj)
        target = policy.codec.decode(ev.x0[:, 0] + 1e-3 * torch.randn_like(ev.x0[:, 0]))
        term = gt_step_log_prob(policy, x, target, traj, ev).double()
    want = -(ev.x0.double() - policy.chain_x0(x, target).double()[:, None]).pow(2).flatten(2).mean(2)
    assert float(((term - want).abs() / want.abs()).max()) < 1e-5


def test_summed_log_density_clips_the_joint_ratio_at_the_joint_trust_region():
    traj = SimpleNamespace(latents=torch.zeros(2, 5, 3, 32, 32))
    assert step_loss_coefs(DiffusionRLConfig(), "sum", traj).clip_dims == 3 * 32 * 32
    assert step_loss_coefs(DiffusionRLConfig(), "mean", traj).clip_dims == 1
    d, eps = 3 * 32 * 32, 1e-4
    per_dim = torch.tensor([0.5e-4, 2e-4], dtype=torch.float64)  # per-dimension log-ratios: inside, outside 1 +- eps
    adv = torch.ones(2)
    _, _, clipped_sum = ppo_clip_objective(d * per_dim, torch.zeros(2, dtype=torch.float64), adv, eps, dims=d)
    _, _, clipped_mean = ppo_clip_objective(per_dim, torch.zeros(2, dtype=torch.float64), adv, eps)
    assert clipped_sum.tolist() == clipped_mean.tolist() == [False, True]


def test_sampling_seeds_are_tagged_by_domain_and_count_their_parts():
    assert sampling_seed("rollout", 1, 2, 3) != sampling_seed("rollout", 1, 2, 3, 0)
    assert sampling_seed("rollout", 1, 2, 3) != sampling_seed("diffusion_sft", 1, 2, 3)
    assert sampling_seed("rollout", 1, 2, 3) == sampling_seed("rollout", 1, 2, 3) < 2**63
