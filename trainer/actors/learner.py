"""The learner: advantages and the GRPO update of the policy against a frozen reference copy."""

from __future__ import annotations

import copy
import time

import torch

from irpo_common.device import resolve_device
from trainer.actors.messages import Rollout
from trainer.config import TrainConfig
from trainer.diagnostics import Sensitivity, action_sensitivity
from trainer.grpo import (
    HistoryTracker,
    LossCoefs,
    beta_kl,
    best_candidate_index,
    build_optimizer,
    difficulty_weights,
    group_advantages,
    grpo_loss,
    linear_anneal,
)
from trainer.model import build_policy


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class Learner:
    """Holds the trained policy, the frozen reference (the starting policy), the optimiser and the tracker.

    Version n means n updates applied; every update returns the new weights with their version.
    """

    def __init__(self, cfg: TrainConfig, total_steps: int):
        self.cfg = cfg
        self.total_steps = total_steps
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.policy = build_policy(cfg.model).to(self.device).train()
        self.reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.optimizer = build_optimizer(self.policy, cfg.optim)
        g = cfg.grpo
        self.tracker = HistoryTracker(g.history_buffer, g.history_min_count, g.advantage_eps) if g.advantage == "history" else None
        self.version = 0

    def describe(self) -> dict:
        return {
            "device": str(self.device),
            "parameters": sum(p.numel() for p in self.policy.parameters()),
            "weights": str(self.cfg.model.checkpoint) if self.cfg.model.checkpoint else "RANDOM initialisation (model.checkpoint is not set)",
        }

    def action_sensitivity(self, degraded: torch.Tensor) -> Sensitivity:
        """How far each action moves the current policy's output on these images (trainer/diagnostics.py)."""
        return action_sensitivity(self.policy, degraded.to(self.device))

    def weights(self) -> tuple[int, dict[str, torch.Tensor]]:
        return self.version, cpu_state(self.policy)

    def _advantages(self, rollout: Rollout) -> torch.Tensor:
        g = self.cfg.grpo
        if self.tracker is not None:
            return self.tracker.advantages(rollout.ids, rollout.rewards)
        return group_advantages(rollout.rewards, g.advantage_eps, normalize_std=g.advantage == "group")

    def update(self, *parts: Rollout) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """One GRPO update on a step's rollout (the parts of its actors, given as object references that
        Ray resolves here); returns (metrics, new weights). Metrics are for the step's log."""
        t0 = time.perf_counter()
        rollout = Rollout.concat(list(parts))
        g, o = self.cfg.grpo, self.cfg.optim
        step = rollout.step
        rewards = rollout.rewards
        group = rewards.shape[1]
        dev = self.device
        adv = self._advantages(rollout).flatten().to(dev)
        x = rollout.degraded.to(dev)
        target = rollout.target.to(dev)
        xg = x.repeat_interleave(group, dim=0)
        actions = rollout.actions.to(dev)
        old_log_prob = rollout.old_log_prob.to(dev)
        best = best_candidate_index(rewards).to(dev)
        coefs = LossCoefs(
            clip_eps=g.clip_eps,
            kl=g.kl_coef,
            entropy=g.entropy_coef,
            sup=linear_anneal(*g.sup_coef, step, self.total_steps),
            cons=linear_anneal(*g.cons_coef, step, self.total_steps),
        )
        with torch.no_grad():
            ref = self.reference.evaluate_actions(xg, actions)
        stats: dict[str, float] = {}
        for _ in range(g.ppo_epochs):
            ev = self.policy.evaluate_actions(xg, actions)
            deterministic = self.policy.deterministic(x)
            weights = difficulty_weights(deterministic, target) if g.adaptive_weighting else None
            loss, stats = grpo_loss(
                log_prob=ev.log_prob,
                old_log_prob=old_log_prob,
                advantages=adv,
                entropy=ev.entropy,
                kl=beta_kl(ev.alpha, ev.beta, ref.alpha, ref.beta),
                best_images=ev.images[best],
                target=target,
                deterministic=deterministic,
                coefs=coefs,
                sample_weights=weights,
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {step}: non-finite loss {loss.item()} ({stats})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), o.grad_clip))
            self.optimizer.step()
        self.version += 1
        stats.update({
            "advantage/mean": adv.mean().item(),
            "advantage/std": adv.std().item() if adv.numel() > 1 else 0.0,
            "advantage/abs_max": adv.abs().max().item(),
            **{f"lr/{pg['name']}": pg["lr"] for pg in self.optimizer.param_groups},
        })
        t1 = time.perf_counter()
        new_weights = cpu_state(self.policy)
        stats["time/update"] = t1 - t0
        stats["time/weight_export"] = time.perf_counter() - t1
        return stats, new_weights

    def state(self) -> dict:
        """Everything a checkpoint needs to continue exactly (weights go to safetensors, the rest to torch.save)."""
        return {
            "policy": cpu_state(self.policy),
            "reference": cpu_state(self.reference),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # a snapshot, not the live moment tensors
            "tracker": self.tracker.state_dict() if self.tracker is not None else None,
            "version": self.version,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.reference.load_state_dict(state["reference"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.tracker is not None:
            if state["tracker"] is None:
                raise ValueError("the checkpoint has no advantage history but grpo.advantage is 'history'")
            self.tracker.load_state_dict(state["tracker"])
        self.version = state["version"]
        torch.set_rng_state(state["torch_rng"])
