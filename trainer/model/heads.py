"""Beta policy heads of IRPO: pooled features -> Beta(alpha, beta) for two actions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BetaHead(nn.Module):
    """MLP giving (alpha, beta), each (N, 2), as softplus(.) + min_concentration.

    The last layer starts near zero with its bias set so that every action starts as
    Beta(c0, c0): mean 0.5 (AdaIR's blend for the gates) and a spread set by c0.
    """

    def __init__(self, in_dim: int, hidden: int, min_concentration: float, init_concentration: float):
        super().__init__()
        if init_concentration <= min_concentration:
            raise ValueError(f"init concentration {init_concentration} must exceed the minimum {min_concentration}")
        self.min_concentration = min_concentration
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 4))
        last = self.body[-1]
        nn.init.normal_(last.weight, std=1e-2)
        excess = init_concentration - min_concentration
        nn.init.constant_(last.bias, excess + math.log(-math.expm1(-excess)))  # softplus^-1(excess)

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        # float32 even under bf16 autocast: the Beta log-densities and KL are computed from these
        params = F.softplus(self.body(pooled).float()) + self.min_concentration
        return params[:, 0::2], params[:, 1::2]
