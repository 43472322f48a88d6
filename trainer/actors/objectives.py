"""The learner's objective per policy family, chosen by policy.kind; plumbing only (the maths is in
trainer/grpo and the family's package).

An objective sees one step's rollout once and returns its advantages (N, S) and a loss function
the learner calls once per PPO epoch: loss(epoch) -> (loss, logged stats).
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

StepLoss = Callable[[int], tuple[Tensor, dict[str, float]]]


def irpo_objective(learner: "Learner", rollout: Rollout) -> tuple[Tensor, StepLoss]:
    """IRPO: one joint action step; PPO + entropy + Beta KL + L1 to GT of the best candidate + consistency."""
    g = learner.cfg.grpo
    dev = learner.device
    adv = learner.final_advantages(rollout).flatten().to(dev)
    x, target = rollout.degraded.to(dev), rollout.target.to(dev)
    traj = rollout.trajectory.to(dev)
    best = best_candidate_index(rollout.rewards).to(dev)
    coefs = LossCoefs(
        clip_eps=g.clip_eps,
        kl=g.kl_coef,
        entropy=g.entropy_coef,
        sup=linear_anneal(*g.sup_coef, rollout.step, learner.total_steps),
        cons=linear_anneal(*g.cons_coef, rollout.step, learner.total_steps),
    )
    with torch.no_grad():
        ref = learner.reference.evaluate(x, traj)

    def loss(epoch: int) -> tuple[Tensor, dict[str, float]]:
        ev = learner.policy.evaluate(x, traj)
        deterministic = learner.policy.deterministic(x)
        return grpo_loss(
            log_prob=ev.log_prob[:, 0],
            old_log_prob=traj.log_prob[:, 0],
            advantages=adv,
            entropy=ev.entropy[:, 0],
            kl=ev.kl(ref)[:, 0],
            best_images=ev.images[best],
            target=target,
            deterministic=deterministic,
            coefs=coefs,
            sample_weights=difficulty_weights(deterministic, target) if g.adaptive_weighting else None,
        )

    return adv[:, None], loss


def _sft_generator(seed: int, step: int, epoch: int) -> torch.Generator:
    """The diffusion loss's timesteps and noise follow from (seed, step, epoch): a resumed run draws the same."""
    return torch.Generator().manual_seed(sampling_seed("diffusion_sft", seed, step, epoch))


def diffusion_objective(learner: "Learner", rollout: Rollout) -> tuple[Tensor, StepLoss]:
    """DDPO per-step PPO against the recorded log-probs, per-step KL to the reference, step-wise and
    noise-level advantages; L_SFT the diffusion loss (seed 2's adaptive weights), LRPO's GT likelihood."""
    # imported here: the family's package imports diffusers (seconds per process), which an IRPO run never needs
    from trainer.policies.diffusion.objective import gt_step_log_prob, step_advantages, step_loss_coefs

    rl = learner.cfg.policy.diffusion.rl
    dev = learner.device
    policy, reference = learner.policy, learner.reference
    x, target = rollout.degraded.to(dev), rollout.target.to(dev)
    traj = rollout.trajectory.to(dev)
    final = learner.final_advantages(rollout) if learner.cfg.grpo.reward_aggregation == "per_term" else None
    adv = step_advantages(rollout.ids, rollout.rewards, rollout.estimate_rewards, traj, policy, rl, learner.normalise, final).to(dev)
    coefs = step_loss_coefs(rl, learner.cfg.policy.diffusion.logprob_reduction, traj)
    with torch.no_grad():
        ref = reference.evaluate(x, traj)

    def loss(epoch: int) -> tuple[Tensor, dict[str, float]]:
        ev = policy.evaluate(x, traj)
        needs_sft = rl.sft_coef > 0
        sft = policy.diffusion_loss(x, target, _sft_generator(learner.cfg.seed, rollout.step, epoch)) if needs_sft else x.new_zeros(x.shape[0])
        return step_grpo_loss(
            log_prob=ev.log_prob,
            old_log_prob=traj.log_prob,
            advantages=adv,
            kl=ev.kl(ref),
            sft_loss=sft,
            coefs=coefs,
            gt_log_prob=gt_step_log_prob(policy, x, target, traj, ev) if rl.gt_likelihood_coef > 0 else None,
            sample_weights=difficulty_weights(policy.deterministic(x), target) if rl.adaptive_weighting else None,
        )

    return adv, loss


OBJECTIVES: dict[str, Callable[["Learner", Rollout], tuple[Tensor, StepLoss]]] = {"irpo": irpo_objective, "diffusion": diffusion_objective}
