"""The diffusion chain's frame options: the residual around the condition and the start strength (img2img).

They change where the chain starts and what its x_0 means, never the step maths: the PPO ratio of a recorded
chain is exactly 1 before any update, and the output is the condition plus the chain's result."""

import pytest
import torch

from trainer.policies import build_policy
from trainer.policies.diffusion import DiffusionConfig
from trainer.policies.diffusion.ddim import ddim_step, gaussian_log_density, gt_step_mean
from trainer.policies.diffusion.objective import gt_step_log_prob
from trainer.policies.diffusion.schedule import Schedule

TINY = dict(block_out_channels=[16, 32], sampling_steps=4)


def tiny_policy(**frame):
    torch.manual_seed(0)
    return build_policy(DiffusionConfig(**TINY, **frame)).eval()


@pytest.mark.parametrize("frame", [dict(residual=True), dict(start_strength=0.3), dict(residual=True, start_strength=0.3)])
def test_recorded_log_probs_re_evaluate_to_ratio_one(frame):
    policy = tiny_policy(**frame)
    x = torch.rand(2, 3, 16, 16)
    traj = policy.sample(x, 4, torch.Generator().manual_seed(3)).trajectory
    for j in range(3):  # the batch shape of sampling: bit-identical
        ev = policy.evaluate(x, traj, steps=torch.tensor([j]))
        assert torch.equal(torch.exp(ev.log_prob[:, 0] - traj.log_prob[:, j]), torch.ones(8))


def test_strength_spaces_the_chain_below_its_start_and_each_step_lands_on_the_next():
    s = Schedule(DiffusionConfig(**TINY, start_strength=0.3))
    t = s.timesteps(4)
    assert t.tolist() == [299, 224, 149, 74]  # trailing spacing over 300 instead of 1000
    assert s.prev_timesteps(t).tolist() == [224, 149, 74, -1]
    full = Schedule(DiffusionConfig(**TINY))
    assert full.timesteps(4).tolist() == [999, 749, 499, 249]  # diffusers' spacing at strength 1
    assert full.prev_timesteps(full.timesteps(4)).tolist() == [749, 499, 249, -1]


def test_strength_starts_from_the_noised_degraded_image():
    policy = tiny_policy(start_strength=0.3)
    x = torch.rand(1, 3, 16, 16)
    traj = policy.sample(x, 2, torch.Generator().manual_seed(0)).trajectory
    noise = torch.randn((2, 4, 3, 16, 16), generator=torch.Generator().manual_seed(0))[:, 0]
    a = policy.schedule.alpha_bar(torch.tensor(299))
    want = a.sqrt() * (x * 2 - 1) + (1 - a).sqrt() * noise
    assert torch.allclose(traj.latents[:, 0], want, atol=1e-6)
    # under the residual the degraded image is the origin: the start is the noise scaled to t = 299
    res = tiny_policy(residual=True, start_strength=0.3).sample(x, 2, torch.Generator().manual_seed(0)).trajectory
    assert torch.allclose(res.latents[:, 0], (1 - a).sqrt() * noise, atol=1e-6)


def test_residual_output_is_the_condition_plus_the_chain_result():
    policy = tiny_policy(residual=True)
    x = torch.rand(2, 3, 16, 16)
    s = policy.sample(x, 1, torch.Generator().manual_seed(1))
    assert torch.allclose(s.images, (s.trajectory.latents[:, -1] + x * 2 - 1 + 1) / 2, atol=1e-6)
    target = torch.rand(2, 3, 16, 16)
    assert torch.allclose(policy.chain_x0(x, target), (target - x) * 2, atol=1e-6)


def test_residual_clamp_keeps_the_image_in_range_not_the_residual():
    x_t, out = torch.full((1, 3, 2, 2), 1.8), torch.full((1, 3, 2, 2), -3.0)  # epsilon with a_t ~ 1: x0_hat ~ x_t = 1.83
    origin = torch.full((1, 3, 2, 2), 0.5)
    step = ddim_step(out, x_t, torch.tensor(0.9999), torch.tensor(1.0), 1.0, "epsilon", True, origin)
    assert torch.allclose(step.x0 + origin, torch.ones(1, 3, 2, 2))  # image clamped at 1: residual 0.5, not 1


def test_pretraining_draws_timesteps_below_the_start():
    policy = tiny_policy(start_strength=0.3)
    seen = []
    unet_forward = policy.unet.forward
    policy.unet.forward = lambda sample, t, *a, **k: (seen.append(t.clone()), unet_forward(sample, t, *a, **k))[1]
    for seed in range(20):
        policy.diffusion_loss(torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16), torch.Generator().manual_seed(seed))
    t = torch.cat(seen)
    assert int(t.max()) < 300 and int(t.max()) > 200


def test_gt_likelihood_steps_towards_the_residual_in_the_residual_frame():
    # target == degraded: the residual is 0, so the GT step is DDIM's posterior mean towards x_0 = 0 (the raw log-density)
    policy = tiny_policy(residual=True, rl=dict(gt_likelihood_norm="none"))
    x = torch.rand(1, 3, 16, 16)
    traj = policy.sample(x, 2, torch.Generator().manual_seed(2)).trajectory
    ev = policy.evaluate(x, traj)
    steps, t = ev.steps, traj.timesteps
    x_t = traj.latents[:, steps].flatten(0, 1)
    a_t = policy.schedule.alpha_bar(t[steps]).repeat(2)
    a_prev = policy.schedule.alpha_bar(policy.schedule.prev_timesteps(t)[steps]).repeat(2)
    std = ev.std.flatten(0, 1)
    want = gaussian_log_density(gt_step_mean(x_t, torch.zeros_like(x_t), a_t, a_prev, std), ev.mean.flatten(0, 1), std).view(2, 3)
    assert torch.allclose(gt_step_log_prob(policy, x, x.clone(), traj, ev), want, atol=1e-5)


def test_sample_prediction_step_matches_diffusers_ddim():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True, prediction_type="sample")
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    x_t, out, z = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
    a = sched.alphas_cumprod
    step = ddim_step(out, x_t, a[700], a[600], 0.7, "sample", False)
    assert torch.allclose(step.x0, out)
    assert torch.allclose(step.mean + step.std * z, sched.step(out, 700, x_t, eta=0.7, variance_noise=z).prev_sample, atol=1e-5)


@pytest.mark.parametrize("norm", ["mse", "l1"])
def test_diffusion_loss_takes_the_configured_norm_of_the_denoiser_error(norm):
    policy = tiny_policy(residual=True, prediction_type="sample", loss=norm)
    x, target = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    draw = policy.diffusion_draw(target, torch.Generator().manual_seed(4))
    t, noise, _ = draw
    x0 = policy.chain_x0(x, target)
    out = policy.unet(torch.cat([policy.schedule.add_noise(x0, noise, t), x * 2 - 1], dim=1), t).sample
    err = (out - x0).flatten(1)  # 'sample' prediction: the target is the residual itself
    want = err.abs().mean(1) if norm == "l1" else err.pow(2).mean(1)
    assert torch.allclose(policy.diffusion_loss(x, target, draw=draw), want, atol=1e-6)
