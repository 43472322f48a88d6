"""The diffusion family's policy gradient learns: per-step PPO on the recorded step log-densities,
with group-normalised advantages and nothing else (no diffusion loss, no KL), raises the mean
reward of samples on held-out images; the same run with shuffled advantages does not.

The reward is in-process and one the sampler can move: the mean brightness of the output. The
policy is a tiny conditional U-Net with RANDOM weights on 16 px images and a 4-step DDIM chain
(3 stochastic steps). Everything else is what the learner's diffusion objective uses:
DiffusionPolicy.sample / evaluate, step_advantages (group-normalised, every step takes the final
reward) and step_grpo_loss (per-step PPO clip against the recorded log-probs) with the diffusion
loss, the KL and the GT likelihood at 0.
"""

from __future__ import annotations

import torch

from trainer.grpo.step_losses import StepLossCoefs, step_grpo_loss
from trainer.policies import build_policy
from trainer.policies.diffusion import DiffusionConfig, DiffusionPolicy
from trainer.policies.diffusion.credit import group_normaliser
from trainer.policies.diffusion.objective import step_advantages

SIDE = 16
STEPS = 150
IMAGES_PER_STEP = 2
GROUP = 4
CFG = DiffusionConfig(block_out_channels=[8, 16], norm_num_groups=4, sampling_steps=4)
RL_ONLY = StepLossCoefs(clip_eps=CFG.rl.clip_eps, kl=0.0, sft=0.0, gt_likelihood=0.0)


def _images(n: int, seed: int) -> torch.Tensor:
    """Smooth random colour images (upsampled noise), so they look a little like photos."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, SIDE // 4, SIDE // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(SIDE, SIDE), mode="bilinear", align_corners=False)


def brightness(y: torch.Tensor) -> torch.Tensor:
    return y.clamp(0, 1).flatten(1).mean(dim=1)


@torch.no_grad()
def held_out_reward(policy: DiffusionPolicy, x: torch.Tensor) -> float:
    """Mean reward of G samples per held-out image, from the same noise before and after training."""
    return brightness(policy.sample(x, GROUP, torch.Generator().manual_seed(7)).images).mean().item()


def train(shuffle_advantages: bool) -> tuple[float, float, float]:
    """(held-out reward before, after, max |ratio - 1| at the first update) of an RL-only run."""
    torch.manual_seed(0)
    policy = build_policy(CFG).train()
    held_out = _images(8, seed=1)
    before = held_out_reward(policy, held_out)
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(2)
    ids = [str(i) for i in range(IMAGES_PER_STEP)]
    first_ratio_error = float("nan")
    for step in range(STEPS):
        x = _images(IMAGES_PER_STEP, seed=1000 + step)
        sample = policy.sample(x, GROUP, gen)
        rewards = brightness(sample.images).view(IMAGES_PER_STEP, GROUP)
        adv = step_advantages(ids, rewards, None, sample.trajectory, policy, CFG.rl, group_normaliser(1e-6))
        if shuffle_advantages:
            adv = adv[torch.randperm(adv.shape[0], generator=gen)]
        ev = policy.evaluate(x, sample.trajectory)
        loss, stats = step_grpo_loss(log_prob=ev.log_prob, old_log_prob=sample.trajectory.log_prob, advantages=adv,
                                     kl=torch.zeros_like(adv), sft_loss=torch.zeros(IMAGES_PER_STEP), coefs=RL_ONLY)
        if step == 0:
            first_ratio_error = max(stats["ratio/max"] - 1, 1 - stats["ratio/min"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return before, held_out_reward(policy, held_out), first_ratio_error


def test_rl_alone_raises_held_out_brightness_and_shuffled_advantages_do_not():
    # measured (1 thread, seeds 0-2 of the start): real +0.37 to +0.47 (0.52 -> 0.89, 0.48 -> 0.95,
    # 0.56 -> 0.97); shuffled -0.06 to +0.06. The margins sit between the two.
    before, after, ratio_error = train(shuffle_advantages=False)
    s_before, s_after, s_ratio_error = train(shuffle_advantages=True)
    print(f"real: {before:.3f} -> {after:.3f}; shuffled: {s_before:.3f} -> {s_after:.3f} (random weights)")
    # the first update sees the sampling policy itself: every per-step ratio is 1 (up to float32
    # reassociation of the one batched U-Net call over all steps)
    assert ratio_error < 1e-5 and s_ratio_error < 1e-5
    assert before == s_before and before < 0.7  # the same start, with room to rise
    assert after - before > 0.2, "RL alone did not raise the held-out mean reward"
    assert abs(s_after - s_before) < 0.12, "shuffled advantages (no signal) moved the held-out reward"
