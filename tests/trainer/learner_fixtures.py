"""Shared piece of the learner tests: an update after a state restore is exactly the update without one."""

from __future__ import annotations

from typing import Callable

import torch

from trainer.actors.learner import Learner
from trainer.actors.messages import Rollout
from trainer.config import TrainConfig


def assert_restore_is_exact(cfg: TrainConfig, rollout: Callable[[Learner, int], Rollout]) -> tuple[dict, dict]:
    """Update a learner on step 0, load its state into a fresh learner, update both on step 1: the same stats
    (timings aside) and bit-identical weights. Returns (step-1 stats, the state after step 0)."""
    a = Learner(cfg, total_steps=4)
    a.update(rollout(a, 0))
    state = a.state()
    b = Learner(cfg, total_steps=4)
    b.load_state(state)
    nxt = rollout(a, 1)
    sa, pa = a.update(nxt)
    sb, pb = b.update(nxt)
    wa, wb = pa.tensors(), pb.tensors()
    assert sa == {**sb, "time/update": sa["time/update"], "time/weight_export": sa["time/weight_export"]}
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    return sa, state
