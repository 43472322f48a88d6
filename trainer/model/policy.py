"""The restoration policy: AdaIR backbone + IRPO's Beta rate and fuse heads on each frequency module.

Actions, 12 per image, in module order fre1, fre2, fre3: [r_h, r_l, g_f, g_o] each.
r_h, r_l set the low-pass mask of the frequency split (trainer/model/adair.py); g_f, g_o blend
the decoder feature with the module output. The fuse heads see decoder features that depend on
earlier actions, so every quantity is computed along one trajectory in a single forward pass.
It is the 'irpo' family of the policy interface (trainer/policies/interface.py): one action step
per rollout (S = 1), the joint draw of the 12 actions.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from typing import Iterator, Literal, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Beta

from trainer.config import ModelConfig
from trainer.grpo.losses import beta_kl
from trainer.model.adair import AdaIR
from trainer.model.heads import BetaHead
from trainer.model.weights_io import load_policy_weights
from trainer.policies.interface import ParameterGroup, PolicySample

log = logging.getLogger(__name__)

NUM_MODULES = 3
ACTIONS_PER_MODULE = 4
# Samples are kept this far inside (0, 1): Beta densities with concentration 1 are finite at
# the ends but float32 samples can round onto them, where log(0) would poison the log-prob.
ACTION_EPS = 1e-6


@dataclass
class BetaTrajectory:
    """What a rollout of this family records: the 12 actions of each row and their joint log-density."""

    actions: Tensor  # (N, 12) in (0, 1)
    log_prob: Tensor  # (N, 1): one action step per row

    def to(self, device: torch.device | str) -> "BetaTrajectory":
        return replace(self, actions=self.actions.to(device), log_prob=self.log_prob.to(device))

    def rows(self, start: int, stop: int) -> "BetaTrajectory":
        return replace(self, actions=self.actions[start:stop], log_prob=self.log_prob[start:stop])

    @classmethod
    def cat(cls, parts: Sequence["BetaTrajectory"]) -> "BetaTrajectory":
        return cls(torch.cat([p.actions for p in parts]), torch.cat([p.log_prob for p in parts]))


@dataclass
class BetaEvaluation:
    """A recorded trajectory under current parameters: the interface's Evaluation, plus the images its
    actions give now (IRPO's supervised terms use the best candidate's)."""

    log_prob: Tensor  # (N, 1)
    entropy: Tensor  # (N, 1) sum of the 12 Beta entropies
    images: Tensor  # (N, 3, H, W), differentiable
    alpha: Tensor  # (N, 12)
    beta: Tensor  # (N, 12)

    def kl(self, reference: "BetaEvaluation") -> Tensor:
        """(N, 1) closed-form Beta KL to the reference along the same actions."""
        return beta_kl(self.alpha, self.beta, reference.alpha, reference.beta)[:, None]


@dataclass
class PolicyEval:
    images: Tensor  # (N, 3, H, W), differentiable
    log_prob: Tensor  # (N,)
    entropy: Tensor  # (N,) sum of the 12 Beta entropies
    alpha: Tensor  # (N, 12)
    beta: Tensor  # (N, 12)


@dataclass
class _Trajectory:
    images: Tensor
    actions: Tensor
    alpha: Tensor
    beta: Tensor

    def distribution(self) -> Beta:
        return Beta(self.alpha, self.beta)


class RestorationPolicy(nn.Module):
    kind = "irpo"
    action_dim = NUM_MODULES * ACTIONS_PER_MODULE

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.backbone = AdaIR(
            dim=cfg.dim,
            num_blocks=tuple(cfg.num_blocks),
            num_refinement_blocks=cfg.num_refinement_blocks,
            heads=tuple(cfg.heads),
            ffn_expansion_factor=cfg.ffn_expansion_factor,
            bias=cfg.bias,
            fre_para1_init=cfg.fre_para1_init,
            fre_temperature_init=cfg.fre_temperature_init,
            fre_mask_softness=cfg.fre_mask_softness,
        )
        widths = [m.conv1.out_channels for m in self.backbone.frequency_modules()]

        def head(width: int) -> BetaHead:
            return BetaHead(width, cfg.head_hidden, cfg.beta_min_concentration, cfg.beta_init_concentration)

        self.head_feature_grad = cfg.head_feature_grad
        self.rate_heads = nn.ModuleList(head(w) for w in widths)
        self.fuse_heads = nn.ModuleList(head(w) for w in widths)

    def head_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.rate_heads.parameters()
        yield from self.fuse_heads.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.backbone.parameters()

    def _trajectory(self, x: Tensor, mode: Literal["sample", "given", "mean"], actions: Tensor | None = None, group: int = 1) -> _Trajectory:
        """One pass along the trajectory of each of the len(x) * group rows (image-major).

        Every action sits in the decoder, so the encoder runs once per image and its features
        are shared by the image's group of candidates.
        """
        n = x.shape[0] * group
        acts = [None] * self.action_dim
        alphas = [None] * self.action_dim
        betas = [None] * self.action_dim

        def decide(module: int, kind: Literal["rate", "fuse"], pooled: Tensor) -> Tensor:
            heads = self.rate_heads if kind == "rate" else self.fuse_heads
            alpha, beta = heads[module](pooled.detach() if mode == "given" and not self.head_feature_grad else pooled)
            col = module * ACTIONS_PER_MODULE + (0 if kind == "rate" else 2)
            if mode == "sample":
                a = Beta(alpha, beta).sample().clamp(ACTION_EPS, 1.0 - ACTION_EPS)
            elif mode == "given":
                a = actions[:, col : col + 2]
            else:
                a = alpha / (alpha + beta)
            for j in range(2):
                acts[col + j], alphas[col + j], betas[col + j] = a[:, j], alpha[:, j], beta[:, j]
            return a

        if mode == "given":
            if actions is None or actions.shape != (n, self.action_dim):
                got = None if actions is None else tuple(actions.shape)
                raise ValueError(f"actions must have shape ({n}, {self.action_dim}), got {got}")
            if not bool(((actions > 0) & (actions < 1)).all()):
                raise ValueError("actions must lie strictly inside (0, 1)")
        features = self.backbone.encode(x)
        if group > 1:
            x = x.repeat_interleave(group, dim=0)
            features = tuple(f.repeat_interleave(group, dim=0) for f in features)
        images = self.backbone.decode(x, features, decide)
        return _Trajectory(images, torch.stack(acts, 1), torch.stack(alphas, 1), torch.stack(betas, 1))

    @torch.no_grad()
    def sample(self, x: Tensor, group_size: int, generator: torch.Generator | None = None) -> PolicySample:
        """G stochastic candidates per image in one batched forward (rows b*G..b*G+G-1 are image b).

        Runs without gradients: these are rollouts; evaluate_actions gives differentiable values.
        A generator makes the draw reproducible without touching the global RNG.
        """
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        rng = contextlib.nullcontext()
        if generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            devices = [x.device] if x.device.type == "cuda" else []
            rng = torch.random.fork_rng(devices=devices)
        with rng:
            if generator is not None:
                torch.manual_seed(seed)
            traj = self._trajectory(x, "sample", group=group_size)
        return PolicySample(traj.images, BetaTrajectory(traj.actions, traj.distribution().log_prob(traj.actions).sum(1, keepdim=True)))

    def evaluate(self, x: Tensor, trajectory: BetaTrajectory) -> BetaEvaluation:
        """The recorded actions of the len(x) * G rows under the current parameters (the encoder runs once per image)."""
        n = trajectory.actions.shape[0]
        if n % x.shape[0]:
            raise ValueError(f"{n} trajectory rows do not split into {x.shape[0]} images")
        traj = self._trajectory(x, "given", trajectory.actions, group=n // x.shape[0])
        dist = traj.distribution()
        return BetaEvaluation(dist.log_prob(traj.actions).sum(1, keepdim=True), dist.entropy().sum(1, keepdim=True), traj.images, traj.alpha, traj.beta)

    def evaluate_actions(self, x: Tensor, actions: Tensor) -> PolicyEval:
        """Images, log-prob and entropy of given actions under the current parameters."""
        traj = self._trajectory(x, "given", actions)
        dist = traj.distribution()
        return PolicyEval(traj.images, dist.log_prob(traj.actions).sum(1), dist.entropy().sum(1), traj.alpha, traj.beta)

    def deterministic(self, x: Tensor) -> Tensor:
        """Output with every action at its Beta mean (no randomness; differentiable)."""
        return self._trajectory(x, "mean").images

    @torch.no_grad()
    def mean_actions(self, x: Tensor) -> Tensor:
        """The (N, 12) actions of the deterministic output (each head's Beta mean along that trajectory)."""
        return self._trajectory(x, "mean").actions

    def parameter_groups(self) -> list[ParameterGroup]:
        """The backbone and the Beta heads (IRPO trains the heads at a multiple of the lr: optim.head_lr_mult)."""
        return [ParameterGroup("backbone", list(self.backbone_parameters())), ParameterGroup("heads", list(self.head_parameters()))]

    def supervised_loss(self, x: Tensor, target: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B,) L1 of the deterministic output (Beta means) per image: pre-training and the SFT control."""
        return (self.deterministic(x) - target).abs().flatten(1).mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.deterministic(x)


def build_policy(cfg: ModelConfig) -> RestorationPolicy:
    """The policy with cfg.checkpoint loaded (strictly) when set; otherwise random weights, logged as such."""
    policy = RestorationPolicy(cfg)
    if cfg.checkpoint is None:
        log.warning("policy built with RANDOM weights (model.checkpoint is not set)")
    else:
        load_policy_weights(policy, cfg.checkpoint)
    return policy
