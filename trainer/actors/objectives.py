"""The learner's objective per policy family, chosen by policy.kind; plumbing only (the maths is in
trainer/grpo and the family's package).

An objective sees one step's rollout once and returns its advantages (N, S) and a loss function
the learner calls per PPO epoch and per slice of whole image groups (a micro-batch of a rank's share):
loss(epoch, lo, hi) -> (the loss of images lo..hi-1, logged stats). Every term of both families is a
mean over images, candidates or steps, so (hi - lo) / B times a slice's loss, summed over the slices,
is the whole batch's loss; what couples images (advantages, difficulty weights, the diffusion loss's
draw) is computed on the whole batch first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from trainer.actors.messages import Rollout
from trainer.actors.rollout import sampling_seed
from trainer.grpo import LossCoefs, best_candidate_index, difficulty_weights, grpo_loss, linear_anneal
from trainer.grpo.step_losses import step_grpo_loss

if TYPE_CHECKING:
    from trainer.actors.learner import Learner

StepLoss = Callable[[int, int, int], tuple[Tensor, dict[str, float]]]


def irpo_objective(learner: "Learner", rollout: Rollout) -> tuple[Tensor, StepLoss]:
    """IRPO: one joint action step; PPO + entropy + Beta KL + L1 to GT of the best candidate + consistency."""
    g = learner.cfg.grpo
    dev = learner.device
    group = rollout.rewards.shape[1]
    adv = learner.final_advantages(rollout).flatten().to(dev)
    x, target = rollout.degraded.to(dev), rollout.target.to(dev)
    traj = rollout.trajectory.to(dev)
    coefs = LossCoefs(
        clip_eps=g.clip_eps,
        kl=g.kl_coef,
        entropy=g.entropy_coef,
        sup=linear_anneal(*g.sup_coef, rollout.step, learner.total_steps),
        cons=linear_anneal(*g.cons_coef, rollout.step, learner.total_steps),
    )
    reference = _sliced_reference(learner, x, traj, group)
    weights = _difficulty(learner, x, target, g.adaptive_weighting)

    def loss(epoch: int, lo: int, hi: int) -> tuple[Tensor, dict[str, float]]:
        rows = traj.rows(lo * group, hi * group)
        ev = learner.policy.evaluate(x[lo:hi], rows)
        deterministic = learner.policy.deterministic(x[lo:hi]).float()
        best = best_candidate_index(rollout.rewards[lo:hi]).to(dev)
        return grpo_loss(
            log_prob=ev.log_prob[:, 0],
            old_log_prob=rows.log_prob[:, 0],
            advantages=adv[lo * group : hi * group],
            entropy=ev.entropy[:, 0],
            kl=ev.kl(reference(lo, hi))[:, 0],
            best_images=ev.images[best].float(),
            target=target[lo:hi],
            deterministic=deterministic,
            coefs=coefs,
            sample_weights=weights(epoch, lo, hi),
        )

    return adv[:, None], loss


def _sliced_reference(learner: "Learner", x: Tensor, traj, group: int, **evaluate_kwargs) -> Callable[[int, int], object]:
    """The frozen reference's evaluation of images lo..hi-1 (evaluate_kwargs: the diffusion family's trained steps),
    computed once per slice (PPO epochs reuse it)."""
    cache: dict[tuple[int, int], object] = {}

    def reference(lo: int, hi: int):
        if (lo, hi) not in cache:
            with torch.no_grad():
                cache[lo, hi] = learner.reference.evaluate(x[lo:hi], traj.rows(lo * group, hi * group), **evaluate_kwargs)
        return cache[lo, hi]

    return reference


def _difficulty(learner: "Learner", x: Tensor, target: Tensor, enabled: bool) -> Callable[[int, int, int], Tensor | None]:
    """Seed 2's difficulty weights of images lo..hi-1 at a PPO epoch: normalised by the maximum over the whole
    batch, so the current policy's deterministic output is computed for every image once per epoch (no gradient)."""
    cache: dict[int, Tensor] = {}

    def weights(epoch: int, lo: int, hi: int) -> Tensor | None:
        if not enabled:
            return None
        if epoch not in cache:
            cache.clear()
            with torch.no_grad():
                cache[epoch] = difficulty_weights(learner.policy.deterministic(x).float(), target)
        return cache[epoch][lo:hi]

    return weights


def _train_steps_generator(seed: int, step: int) -> torch.Generator:
    """The trained subset of the chain's steps follows from (seed, step): a resumed run trains the same steps."""
    return torch.Generator().manual_seed(sampling_seed("diffusion_train_steps", seed, step))


def _sft_generator(seed: int, step: int, epoch: int) -> torch.Generator:
    """The diffusion loss's timesteps and noise follow from (seed, step, epoch): a resumed run draws the same."""
    return torch.Generator().manual_seed(sampling_seed("diffusion_sft", seed, step, epoch))


def diffusion_objective(learner: "Learner", rollout: Rollout) -> tuple[Tensor, StepLoss]:
    """DDPO per-step PPO against the recorded log-probs, per-step KL to the reference, step-wise and
    noise-level advantages; L_SFT the diffusion loss (seed 2's adaptive weights), LRPO's GT likelihood."""
    # imported here: the family's package imports diffusers (seconds per process), which an IRPO run never needs
    from trainer.policies.diffusion.objective import gt_step_log_prob, step_advantages, step_loss_coefs, train_steps

    rl = learner.cfg.policy.diffusion.rl
    dev = learner.device
    policy = learner.policy
    group = rollout.rewards.shape[1]
    x, target = rollout.degraded.to(dev), rollout.target.to(dev)
    traj = rollout.trajectory.to(dev)
    final = learner.final_advantages(rollout) if learner.cfg.grpo.reward_aggregation == "per_term" else None
    # the credit and noise-level weights run over the whole chain; only the steps of this update's subset train
    steps = train_steps(traj.log_prob.shape[1], rl, rollout.step, _train_steps_generator(learner.cfg.seed, rollout.step))
    adv = step_advantages(rollout.ids, rollout.rewards, rollout.estimate_rewards, traj, policy, rl, learner.normalise, final)[:, steps].to(dev)
    coefs = step_loss_coefs(rl, learner.cfg.policy.diffusion.logprob_reduction, traj)
    reference = _sliced_reference(learner, x, traj, group, steps=steps)
    weights = _difficulty(learner, x, target, rl.adaptive_weighting)
    draws: dict[int, tuple[Tensor | None, ...]] = {}

    def sft_draw(epoch: int, lo: int, hi: int) -> tuple[Tensor | None, ...]:
        if epoch not in draws:
            draws.clear()
            draws[epoch] = policy.diffusion_draw(target, _sft_generator(learner.cfg.seed, rollout.step, epoch))
        return tuple(None if d is None else d[lo:hi] for d in draws[epoch])

    def loss(epoch: int, lo: int, hi: int) -> tuple[Tensor, dict[str, float]]:
        rows = traj.rows(lo * group, hi * group)
        ev = policy.evaluate(x[lo:hi], rows, steps)
        sft = policy.diffusion_loss(x[lo:hi], target[lo:hi], draw=sft_draw(epoch, lo, hi)) if rl.sft_coef > 0 else x.new_zeros(hi - lo)
        return step_grpo_loss(
            log_prob=ev.log_prob,
            old_log_prob=rows.log_prob[:, steps],
            advantages=adv[lo * group : hi * group],
            kl=ev.kl(reference(lo, hi)),
            sft_loss=sft,
            coefs=coefs,
            gt_log_prob=gt_step_log_prob(policy, x[lo:hi], target[lo:hi], rows, ev) if rl.gt_likelihood_coef > 0 else None,
            sample_weights=weights(epoch, lo, hi),
        )

    return adv, loss


OBJECTIVES: dict[str, Callable[["Learner", Rollout], tuple[Tensor, StepLoss]]] = {"irpo": irpo_objective, "diffusion": diffusion_objective}
