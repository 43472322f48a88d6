"""The learner: the GRPO update of the policy against a frozen reference (a copy, or the policy's own shared_reference()).

It knows the policy through the interface (trainer/policies); the objective of the configured
family (trainer/actors/objectives.py) turns a step's rollout into advantages and a loss. One
Learner is one rank of the learner group (trainer/actors/learner_group.py): every rank sees the
whole rollout (advantages and the history tracker are the same everywhere) and computes the
gradient of its share of the image groups, in micro-batches; torch.distributed all-reduces the
gradients once per optimiser step, so every rank applies the same update. With learner.ema_decay every
rank also steps the same EMA of the trainable parameters, for evaluation only: the rollouts sample with
the live weights, and the EMA is swapped in (ema_weights) only to be read.
"""

from __future__ import annotations

import contextlib
import copy
import time
from datetime import timedelta

import ray
import torch
import torch.distributed as dist
from diffusers.training_utils import EMAModel
from torch.nn.parallel import DistributedDataParallel

from irpo_common.device import resolve_device
from irpo_common.process import free_port
from trainer.actors.collective import LinkError, WeightLink
from trainer.actors.messages import Rollout
from trainer.actors.objectives import OBJECTIVES
from trainer.actors.weight_sync import PacketHeader, WeightPacket, export_weights
from trainer.config import TrainConfig
from trainer.diagnostics import Sensitivity, action_sensitivity
from trainer.grpo import HistoryTracker, build_optimizer, group_advantages
from trainer.grpo.advantages import per_term_advantages, term_weights
from trainer.policies import build_policy


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def to_cpu(obj):
    """A copy of a nest of dicts, lists and tuples with every tensor copied to the CPU: what leaves an
    actor must unpickle on a driver without the actor's GPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def shares(num_images: int, parts: int) -> list[tuple[int, int]]:
    """[lo, hi) of `parts` contiguous, near-equal runs of whole image groups."""
    bounds = [num_images * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def merge_stats(parts: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """The logged stats of a batch from those of its slices, each with its share of the batch (summing to 1):
    a value every slice agrees on is kept, 'max' and 'min' keys take the extreme, times the longest (slices of
    ranks run side by side), the rest the weighted mean."""
    out = {}
    for key in parts[0][1]:
        values = [s[key] for _, s in parts]
        if all(v == values[0] for v in values):
            out[key] = values[0]
        elif key.endswith("max") or key.startswith("time/"):
            out[key] = max(values)
        elif key.endswith("min"):
            out[key] = min(values)
        else:
            out[key] = sum(w * v for (w, _), v in zip(parts, values))
    return out


class _LossForward(torch.nn.Module):
    """The policy as DDP's module: a loss function of the policy runs as its forward, so DDP sees the
    parameters it uses (the policy's methods other than forward would bypass DDP's bookkeeping)."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, loss_fn, *args):
        return loss_fn(*args)


class Learner(WeightLink):
    """Holds the trained policy, the frozen reference (the starting policy), the optimiser and the tracker.

    Version n means n updates applied; every update returns the new weights with their version.
    """

    def __init__(self, cfg: TrainConfig, total_steps: int, rank: int = 0, num_ranks: int = 1):
        self.cfg = cfg
        self.total_steps = total_steps
        self.rank, self.num_ranks = rank, num_ranks
        self.device = resolve_device(cfg.device)
        self.autocast_dtype = self._check_precision(cfg.learner.precision)
        torch.manual_seed(cfg.seed)
        self.policy = build_policy(cfg.policy_section).to(self.device).train()
        # a policy that can serve as its own reference (LoRA: adapters disabled) keeps no second copy
        shared = getattr(self.policy, "shared_reference", lambda: None)()
        self.reference = shared if shared is not None else copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.optimizer = build_optimizer(self.policy, cfg.optim)
        # fp16 autocast of the denoiser underflows small gradients (docs/benchmarks.md, issue 21 item 6): the loss is
        # scaled as torch.amp prescribes (a pass-through for any other precision)
        fp16 = cfg.policy.kind == "diffusion" and cfg.policy_section.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.ema = EMAModel(self._trainable(), decay=cfg.learner.ema_decay) if cfg.learner.ema_decay else None
        self.objective = OBJECTIVES[cfg.policy.kind]
        self.ddp: DistributedDataParallel | None = None
        g = cfg.grpo
        tracked = g.advantage in ("history", "history_batch")
        self.tracker = HistoryTracker(g.history_buffer, g.history_min_count, g.advantage_eps, with_batch=g.advantage == "history_batch") if tracked else None
        self.version = 0
        self.outbox: WeightPacket | None = None  # rank 0's latest export, with the collective transport

    def _trainable(self) -> list[torch.nn.Parameter]:
        """The parameters the optimiser trains (LoRA: the adapters), in a fixed order: what the EMA averages."""
        return [p for p in self.policy.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def ema_weights(self):
        """The policy with the EMA's weights in its trainable parameters for the block; the live weights come
        back bit for bit after it (EMAModel.store/copy_to/restore), so training continues undisturbed."""
        if self.ema is None:
            raise ValueError("no EMA: learner.ema_decay is off")
        params = self._trainable()
        self.ema.store(params)
        self.ema.copy_to(params)
        try:
            yield self.policy
        finally:
            self.ema.restore(params)

    def _check_precision(self, precision: str) -> torch.dtype | None:
        if precision == "fp32":
            return None
        native = torch.cuda.is_bf16_supported() if self.device.type == "cuda" else torch.ops.mkldnn._is_mkldnn_bf16_supported()
        if not native:
            raise ValueError(f"learner.precision=bf16: this {self.device.type} has no native bf16 (set learner.precision: fp32)")
        return torch.bfloat16

    def join(self, address: str, port: int) -> None:
        """Join the group's torch.distributed process group (gloo on CPU, NCCL on GPU) and wrap the policy in DDP."""
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=self.rank, world_size=self.num_ranks, timeout=timedelta(minutes=30))
        # buffers are not trained and equal on every rank: no sync per forward; parameters a loss leaves
        # unused (e.g. inert frequency branches) are found per backward
        self.ddp = DistributedDataParallel(_LossForward(self.policy), device_ids=[self.device.index or 0] if self.device.type == "cuda" else None,
                                           forward_sync_buffers=False, find_unused_parameters=True)

    def rendezvous(self) -> tuple[str, int]:
        """Where rank 0 hosts the group's process group: its node's address and a free port."""
        return ray.util.get_node_ip_address(), free_port()

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
        return self.version, self._export(), export_weights(self.policy, self.version, "frozen")

    def _export(self) -> WeightPacket:
        """The changing tensors of the current version; kept for link_send when they may go by broadcast."""
        packet = export_weights(self.policy, self.version)
        self.outbox = packet if self.cfg.rollout.weight_sync.transport == "collective" else None
        return packet

    def link_header(self, version: int) -> PacketHeader:
        """The header of the version link_send broadcasts next (trainer/actors/collective.py)."""
        if self.outbox is None or self.outbox.version != version:
            raise LinkError(f"version {version} is not this learner's latest export ({self.outbox.version if self.outbox else 'none'})")
        return self.outbox.header()

    def link_send(self, gen: int) -> None:
        """Broadcast the latest export's flat buffer to the rollout actors of group `gen`."""
        self._link_broadcast(gen, self.outbox.flat())

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


    def _micro_batches(self, num_images: int) -> list[tuple[int, int]]:
        lo, hi = shares(num_images, self.num_ranks)[self.rank]
        size = self.cfg.learner.micro_batch_images or hi - lo
        return [(a, min(a + size, hi)) for a in range(lo, hi, size)]

    def _backward(self, step_loss, epoch: int, num_images: int, step: int) -> dict[str, float]:
        """Gradients of this rank's share, accumulated over its micro-batches; each loss is scaled by its
        share of the batch (times the ranks, as DDP averages), and only the last backward all-reduces."""
        slices = self._micro_batches(num_images)
        parts = []
        for i, (lo, hi) in enumerate(slices):
            last = i == len(slices) - 1
            sync = contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None):
                    loss, stats = self.ddp(step_loss, epoch, lo, hi) if self.ddp is not None else step_loss(epoch, lo, hi)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"step {step}: non-finite loss {loss.item()} ({stats})")
                share = (hi - lo) / num_images
                self.scaler.scale(loss * share * self.num_ranks).backward()
            parts.append((share, stats))
        return merge_stats([(w / sum(w for w, _ in parts), s) for w, s in parts])

    def update(self, *parts: Rollout) -> tuple[dict[str, float], WeightPacket | None]:
        """One GRPO update on a step's rollout (the parts of its actors, given as object references that
        Ray resolves here); returns (metrics of this rank's share, new weights). Metrics are for the step's log."""
        t0 = time.perf_counter()
        rollout = Rollout.concat(list(parts))
        num_images = rollout.rewards.shape[0]
        adv, step_loss = self.objective(self, rollout)
        stats: dict[str, float] = {}
        for epoch in range(self.cfg.grpo.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            stats = self._backward(step_loss, epoch, num_images, rollout.step)
            self.scaler.unscale_(self.optimizer)
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.optim.grad_clip))
            self.scaler.step(self.optimizer)  # skipped when the scaled gradient overflowed (the scale then shrinks)
            self.scaler.update()
            if self.ema is not None:
                self.ema.step(self._trainable())
        self.version += 1
        if self.scaler.is_enabled():
            stats["loss_scale"] = self.scaler.get_scale()
        stats.update({
            "advantage/mean": adv.mean().item(),
            "advantage/std": adv.std().item() if adv.numel() > 1 else 0.0,
            "advantage/abs_max": adv.abs().max().item(),
            **{f"lr/{pg['name']}": pg["lr"] for pg in self.optimizer.param_groups},
        })
        lo, hi = shares(num_images, self.num_ranks)[self.rank]
        stats["learner/share"] = (hi - lo) / num_images  # of this rank: the group weighs the ranks' stats by it
        t1 = time.perf_counter()
        new_weights = self._export() if self.rank == 0 else None  # rank 0 exports for the group
        stats["time/update"] = t1 - t0
        stats["time/weight_export"] = time.perf_counter() - t1
        return stats, new_weights

    def state(self) -> dict:
        """Everything a checkpoint needs to continue exactly, all on the CPU (weights go to safetensors, the rest to
        torch.save). With an EMA, "ema" is the policy's state dict with the EMA swapped in (what evaluation loads)
        and "ema_step" its update count (its decay warms up with it); both None without one."""
        ema = None
        if self.ema is not None:
            with self.ema_weights():
                ema = cpu_state(self.policy)
        return {
            "policy": cpu_state(self.policy),
            "ema": ema,
            "ema_step": None if self.ema is None else self.ema.optimization_step,
            "reference": cpu_state(self.reference),
            "optimizer": to_cpu(self.optimizer.state_dict()),  # a snapshot, not the live moment tensors
            "scaler": self.scaler.state_dict(),  # {} unless fp16
            "tracker": to_cpu(self.tracker.state_dict()) if self.tracker is not None else None,
            "version": self.version,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def load_state(self, state: dict) -> None:
        if (self.ema is None) != (state.get("ema") is None):
            raise ValueError(f"the checkpoint {'has no' if self.ema is not None else 'has an'} EMA of the weights but learner.ema_decay is "
                             f"{self.cfg.learner.ema_decay}: resume with the learner.ema_decay it was written with")
        if self.ema is not None:  # the EMA's weights pass through the policy's own state-dict names
            self.policy.load_state_dict(state["ema"])
            self.ema.load_state_dict({"optimization_step": state["ema_step"], "shadow_params": [p.detach().clone() for p in self._trainable()]})
        self.policy.load_state_dict(state["policy"])
        self.reference.load_state_dict(state["reference"])
        self.optimizer.load_state_dict(state["optimizer"])  # torch moves the moments to the parameters' device
        if self.scaler.is_enabled():
            if not state.get("scaler"):
                raise ValueError("the checkpoint has no fp16 loss scale but policy.diffusion.precision is fp16: resume with the precision it was written with")
            self.scaler.load_state_dict(state["scaler"])
        if self.tracker is not None:
            if state["tracker"] is None:
                raise ValueError(f"the checkpoint has no advantage history but grpo.advantage is {self.cfg.grpo.advantage!r}")
            self.tracker.load_state_dict(state["tracker"])
        self.version = state["version"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
