"""The learner: the GRPO update of the policy against a frozen reference copy.

It knows the policy through the interface (trainer/policies); the objective of the configured
family (trainer/actors/objectives.py) turns a step's rollout into advantages and a loss.
"""

from __future__ import annotations

import copy
import time

import torch

from irpo_common.device import resolve_device
from trainer.actors.messages import Rollout
from trainer.actors.objectives import OBJECTIVES
from trainer.actors.weight_sync import WeightPacket, export_weights
from trainer.config import TrainConfig
from trainer.diagnostics import Sensitivity, action_sensitivity
from trainer.grpo import HistoryTracker, build_optimizer, group_advantages
from trainer.grpo.advantages import per_term_advantages, term_weights
from trainer.policies import build_policy


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
        self.policy = build_policy(cfg.policy_section).to(self.device).train()
        self.reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.optimizer = build_optimizer(self.policy, cfg.optim)
        self.objective = OBJECTIVES[cfg.policy.kind]
        g = cfg.grpo
        tracked = g.advantage in ("history", "history_batch")
        self.tracker = HistoryTracker(g.history_buffer, g.history_min_count, g.advantage_eps, with_batch=g.advantage == "history_batch") if tracked else None
        self.version = 0

    def describe(self) -> dict:
        weights = self.cfg.policy_section.weights
        return {
            "device": str(self.device),
            "policy": self.cfg.policy.kind,
            "parameters": sum(p.numel() for p in self.policy.parameters()),
            "weights": str(weights) if weights else "RANDOM initialisation (no starting weights configured)",
        }

    def action_sensitivity(self, degraded: torch.Tensor) -> Sensitivity | None:
        """How far each action moves the current policy's output on these images (trainer/diagnostics.py);
        None for a policy without named actions."""
        return action_sensitivity(self.policy, degraded.to(self.device))

    @torch.no_grad()
    def deterministic(self, degraded: torch.Tensor) -> torch.Tensor:
        """The current policy's deterministic output on the CPU (the reward-hacking watch, trainer/watch.py)."""
        self.policy.eval()
        try:
            return self.policy.deterministic(degraded.to(self.device)).cpu()
        finally:
            self.policy.train()

    def weights(self) -> tuple[int, WeightPacket, WeightPacket]:
        """(version, its changing tensors, the frozen parameters): trainer/actors/weight_sync.py."""
        return self.version, export_weights(self.policy, self.version), export_weights(self.policy, self.version, "frozen")

    def normalise(self, keys: list[str], rewards: torch.Tensor) -> torch.Tensor:
        """(B, G) rewards of images `keys` -> advantages, as grpo.advantage says (the history is recorded)."""
        g = self.cfg.grpo
        if self.tracker is not None:
            return self.tracker.advantages(keys, rewards)
        return group_advantages(rewards, g.advantage_eps, normalize_std=g.advantage == "group")

    def final_advantages(self, rollout: Rollout) -> torch.Tensor:
        """(B, G) advantages of the final outputs: R normalised as grpo.advantage says, or under
        grpo.reward_aggregation 'per_term' each reward term normalised within its group (GDPO)."""
        if self.cfg.grpo.reward_aggregation == "per_term":
            return per_term_advantages(rollout.terms, term_weights(rollout.terms, self.cfg.reward.weights), self.cfg.grpo.advantage_eps)
        return self.normalise(rollout.ids, rollout.rewards)

    def update(self, *parts: Rollout) -> tuple[dict[str, float], WeightPacket]:
        """One GRPO update on a step's rollout (the parts of its actors, given as object references that
        Ray resolves here); returns (metrics, new weights). Metrics are for the step's log."""
        t0 = time.perf_counter()
        rollout = Rollout.concat(list(parts))
        adv, step_loss = self.objective(self, rollout)
        stats: dict[str, float] = {}
        for epoch in range(self.cfg.grpo.ppo_epochs):
            loss, stats = step_loss(epoch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {rollout.step}: non-finite loss {loss.item()} ({stats})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.optim.grad_clip))
            self.optimizer.step()
        self.version += 1
        stats.update({
            "advantage/mean": adv.mean().item(),
            "advantage/std": adv.std().item() if adv.numel() > 1 else 0.0,
            "advantage/abs_max": adv.abs().max().item(),
            **{f"lr/{pg['name']}": pg["lr"] for pg in self.optimizer.param_groups},
        })
        t1 = time.perf_counter()
        new_weights = export_weights(self.policy, self.version)
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
                raise ValueError(f"the checkpoint has no advantage history but grpo.advantage is {self.cfg.grpo.advantage!r}")
            self.tracker.load_state_dict(state["tracker"])
        self.version = state["version"]
        torch.set_rng_state(state["torch_rng"])
