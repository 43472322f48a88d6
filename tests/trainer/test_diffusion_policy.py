"""The diffusion policy family: exact step Gaussians, recorded log-probs that re-evaluate to ratio 1."""

import torch
from diffusers import DDIMScheduler
from torch.distributions import Normal, kl_divergence

from trainer.policies import build_policy, optimizer_groups
from trainer.policies.diffusion import DiffusionConfig
from trainer.policies.diffusion.ddim import ddim_step, gaussian_kl_same_std, gaussian_log_density

TINY = dict(block_out_channels=[16, 32], sampling_steps=4)


def tiny_policy(seed: int = 0):
    torch.manual_seed(seed)
    return build_policy(DiffusionConfig(**TINY)).eval()


def test_step_log_density_and_kl_match_torch_normal():
    g = torch.Generator().manual_seed(0)
    x, mu, mu_ref = (torch.randn(3, 3, 4, 4, generator=g) for _ in range(3))
    std = torch.tensor([0.1, 0.5, 2.0]).view(3, 1, 1, 1)
    ref = Normal(mu, std.expand_as(mu))
    summed = gaussian_log_density(x, mu, std, "sum")
    assert summed.dtype == torch.float64
    torch.testing.assert_close(summed, Normal(mu.double(), std.double().expand_as(mu)).log_prob(x.double()).flatten(1).sum(1))
    assert torch.allclose(gaussian_log_density(x, mu, std, "mean"), ref.log_prob(x).flatten(1).mean(1), atol=1e-5)
    kl = kl_divergence(Normal(mu, std.expand_as(mu)), Normal(mu_ref, std.expand_as(mu))).flatten(1).mean(1)
    assert torch.allclose(gaussian_kl_same_std(mu, mu_ref, std), kl, atol=1e-5)


def test_summed_log_density_does_not_depend_on_the_summation_order():
    """Float32 sums over C*H*W terms move by ~1e-4 with the order alone, the size of DDPO's clip range."""
    g = torch.Generator().manual_seed(2)
    x, mu = (torch.randn(2, 3, 64, 64, generator=g) for _ in range(2))
    std = torch.tensor([0.05, 0.3]).view(2, 1, 1, 1)
    perm = torch.randperm(3 * 64 * 64, generator=g)
    shuffled = gaussian_log_density(x.flatten(1)[:, perm].view_as(x), mu.flatten(1)[:, perm].view_as(mu), std, "sum")
    assert (gaussian_log_density(x, mu, std, "sum") - shuffled).abs().max() < 1e-8


def test_step_matches_diffusers_ddim_with_the_same_noise():
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=True, set_alpha_to_one=True)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    x_t, out, z = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
    t, t_prev = 700, 600
    a = sched.alphas_cumprod
    step = ddim_step(out, x_t, a[t], a[t_prev], 0.7, "epsilon", True)
    want = sched.step(out, t, x_t, eta=0.7, variance_noise=z).prev_sample
    assert torch.allclose(step.mean + step.std * z, want, atol=1e-5)


def test_recorded_log_probs_re_evaluate_to_ratio_one():
    policy = tiny_policy()
    x = torch.rand(2, 3, 16, 16)
    s = policy.sample(x, 4, torch.Generator().manual_seed(3))
    traj = s.trajectory
    assert s.images.shape == (8, 3, 16, 16) and traj.log_prob.shape == (8, 3) and traj.latents.shape == (8, 5, 3, 16, 16)
    for j in range(3):  # per step, the same batch shape as sampling: bit-identical
        ev = policy.evaluate(x, traj, steps=torch.tensor([j]))
        assert torch.equal(torch.exp(ev.log_prob[:, 0] - traj.log_prob[:, j]), torch.ones(8))
    ev = policy.evaluate(x, traj)  # all steps in one U-Net call: equal up to float32 reassociation
    assert (torch.exp(ev.log_prob - traj.log_prob) - 1).abs().max() < 1e-5
    assert torch.equal(ev.kl(ev), torch.zeros(8, 3))


def test_sampling_is_reproducible_and_deterministic_output_is_fixed():
    policy = tiny_policy()
    x = torch.rand(1, 3, 16, 16)
    a = policy.sample(x, 2, torch.Generator().manual_seed(5)).images
    b = policy.sample(x, 2, torch.Generator().manual_seed(5)).images
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert torch.equal(policy.deterministic(x), policy.deterministic(x))


def test_deterministic_output_of_an_image_does_not_depend_on_its_batch():
    # mining scores batches and evaluation single images: both must see the same output of an image
    policy = tiny_policy()
    x = torch.rand(3, 3, 16, 16)
    alone = torch.cat([policy.deterministic(x[i:i + 1]) for i in range(3)])
    assert torch.allclose(policy.deterministic(x), alone, atol=1e-4)
    assert torch.allclose(policy.deterministic(x.flip(0)), alone.flip(0), atol=1e-4)


def test_parameter_groups_partition_and_pretrained_folder_round_trip(tmp_path):
    policy = tiny_policy()
    assert sum(len(g["params"]) for g in optimizer_groups(policy, 1e-4)) == len(list(policy.parameters()))
    policy.save_pretrained(tmp_path / "unet")
    loaded = build_policy(DiffusionConfig(**TINY, pretrained=tmp_path / "unet")).eval()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in policy.state_dict().items())
    x = torch.rand(1, 3, 16, 16)
    # equal weights; float32 rounding in the U-Net is amplified by 1 / sqrt(alpha_bar) ~ 160 at t = T - 1
    assert torch.allclose(policy.deterministic(x), loaded.deterministic(x), atol=1e-4)
