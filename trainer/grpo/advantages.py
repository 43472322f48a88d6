"""Advantages of GRPO: group-normalised, group-centred, and scaled by a per-image history of reward spread.

Rewards arrive image-major: a (B, G) tensor holds the G candidates of each of B images.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import torch

from irpo_common.reward_spec import RewardWeights, combine_rewards

# The tracker's checkpoint format: it stores centred rewards; an older checkpoint held raw rewards.
_STATE_FORMAT = "centred-rewards-v1"


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, normalize_std: bool = True) -> torch.Tensor:
    """A_ij = (r_ij - mean_j r_i.) / sqrt(var_j r_i. + eps) per image i; only centred when normalize_std=False.

    The population variance is used so a group of G equal rewards gives exactly zero advantage.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (B, G) with G >= 2, got {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize_std:
        return centred
    return centred / torch.sqrt(rewards.var(dim=1, unbiased=False, keepdim=True) + eps)


def zero_spread_fraction(rewards: torch.Tensor) -> float:
    """Share of the (B, G) groups whose G rewards are all equal: they carry no GRPO signal (flow_grpo's and
    Flow-Factory's zero_std_ratio)."""
    return ((rewards.amax(dim=1) - rewards.amin(dim=1)) <= 1e-12).float().mean().item()


def term_weights(terms: Mapping[str, torch.Tensor], weights: RewardWeights) -> dict[str, torch.Tensor]:
    """(B,) weight of each term in each group's R, as combine_rewards applies it to the terms that group has
    (a term is absent, NaN, for a whole group: e.g. the judge dropped for it): the weights of R itself."""
    names = sorted(terms)
    b = next(iter(terms.values())).shape[0]
    out = {k: torch.zeros(b, dtype=torch.float64) for k in names}
    for i in range(b):
        present = {k: 0.0 for k in names if not torch.isnan(terms[k][i, 0])}
        for k, w in combine_rewards(present, weights)[1].items():
            out[k][i] = w
    return out


def per_term_advantages(terms: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], eps: float = 1e-6) -> torch.Tensor:
    """(B, G) advantages with each reward term normalised within its group before the weighted sum, then the
    sum scaled by its batch standard deviation: GDPO's decoupled normalisation (Flow-Factory's `gdpo`
    aggregation, MixGRPO's advantage_aggr; flow_grpo issue 188). A term of large spread no longer drowns
    the others, and a term equal over a group adds 0 for that group.

    terms: name -> (B, G) values, NaN where a group lacks the term; weights: name -> (B,) weight per group.
    """
    total = None
    for name, values in terms.items():
        w = weights[name].to(values.dtype)
        normed = torch.nan_to_num(group_advantages(values, eps), nan=0.0)
        part = w[:, None] * normed
        total = part if total is None else total + part
    if total is None:
        raise ValueError("per-term advantages need at least one reward term")
    return total / torch.sqrt(total.var(unbiased=False) + eps)


class HistoryTracker:
    """Per-image history of reward spread (DDPO's per-prompt stat tracker; the difficulty-adaptive paper).

    A_ij = (r_ij - mean_j r_i.) / sqrt(s_i^2 + eps): centred by the current group's mean, scaled by a
    spread s_i^2 = mean of squared centred rewards (r - its group's mean) over a pool:
    - 'history' (with_batch=False): the image's previous visits (its last `buffer_size` centred rewards);
    - 'history_batch' (with_batch=True): those together with the current batch's centred rewards;
    and the current batch's pooled spread alone while fewer than `min_count` earlier rewards are tracked.
    The current rewards join the history only after their advantages are computed, so they count once.

    Why centred rewards and a key by image id: a training image is seen under a new random crop and flip
    at every visit, so its reward level differs between visits and a history of raw rewards (DDPO's
    tracker, made for fixed prompts) would centre today's candidates by other inputs' means. The G
    candidates of one visit share one input, so their mean is the right centre; what the visits share is
    the policy's spread of rewards on that image, which the centred history estimates with more samples
    than one group. Keying by the exact input (id + crop + flip) instead would almost never repeat a key.
    Centring by the group's mean also gives a group of G equal rewards exactly zero advantage.
    """

    def __init__(self, buffer_size: int, min_count: int, eps: float = 1e-6, with_batch: bool = False):
        if min_count > buffer_size:
            raise ValueError(f"min_count {min_count} exceeds buffer_size {buffer_size}: the history could never be used")
        self.buffer_size = buffer_size
        self.min_count = min_count
        self.eps = eps
        self.with_batch = with_batch
        self._history: dict[str, deque[float]] = {}

    def advantages(self, keys: list[str], rewards: torch.Tensor) -> torch.Tensor:
        """(B, G) advantages of images `keys` from their (B, G) rewards; then the rewards are recorded."""
        if rewards.dim() != 2 or rewards.shape[0] != len(keys) or rewards.shape[1] < 2:
            raise ValueError(f"rewards must be (len(keys)={len(keys)}, G >= 2), got {tuple(rewards.shape)}")
        centred = rewards - rewards.mean(dim=1, keepdim=True)
        batch_sq = centred.flatten() ** 2
        out = torch.empty_like(rewards)
        for i, key in enumerate(keys):
            past = self._history.get(key, ())
            if len(past) < self.min_count:
                spread = batch_sq.mean()
            else:
                past_sq = torch.tensor(list(past), dtype=rewards.dtype) ** 2
                spread = torch.cat([past_sq, batch_sq]).mean() if self.with_batch else past_sq.mean()
            out[i] = centred[i] / torch.sqrt(spread + self.eps)
        for i, key in enumerate(keys):
            self._history.setdefault(key, deque(maxlen=self.buffer_size)).extend(centred[i].tolist())
        return out

    def state_dict(self) -> dict:
        return {"format": _STATE_FORMAT, "history": {k: list(v) for k, v in self._history.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != _STATE_FORMAT:
            raise ValueError("the checkpoint's advantage history holds raw rewards (written before the history became "
                             "centred rewards): it cannot continue a 'history' run; start the post-training afresh")
        self._history = {k: deque(v, maxlen=self.buffer_size) for k, v in state["history"].items()}
