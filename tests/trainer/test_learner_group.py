"""The learner group on a local Ray: 2 data-parallel ranks (gloo) end at the weights of 1 rank on the same
global batch (their EMAs of the weights bit-identical), a dead rank raises LearnerLost, and a learner the cluster cannot place fails within its timeout."""

import os
import tempfile
import time

import pytest
import ray
import torch

from tests.trainer import test_diffusion_learner as diffusion
from tests.trainer import test_grpo_learner as irpo
from trainer.actors.learner import Learner
from trainer.actors.learner_group import LearnerGroup, LearnerLost
from trainer.actors.placement import PlacementError

B, STEPS = 4, 3
LR = 1e-3  # the learner tests' optim.lr


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, _temp_dir=tempfile.mkdtemp(prefix="ray-lg-", dir="/tmp"))
    yield
    ray.shutdown()


def _cfg(family, **learner):
    # the diffusion arm carries the batch-coupled terms whose draws and normalisers must span the ranks; the LRPO
    # GT term is checked for micro-batches in test_learner_scale: with the x0 clamp on, a weight that differs by
    # float rounding moves elements across the clamp, whose gradient jumps (here 12% of the grad norm one step later)
    cfg = irpo._cfg(ppo_epochs=2) if family is irpo else diffusion._cfg({"sft_coef": 1.0, "adaptive_weighting": True}, ppo_epochs=2)
    return cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"cpus_per_rank": 0.5, **learner}),
                                  "rollout": cfg.rollout.model_copy(update={"images_per_worker": B})})


def assert_same_adam_weights(got: dict, expected: dict, steps: int) -> None:
    """Weights after Adam steps from gradients equal up to float rounding. Adam divides by the root of the second
    moment, so rounding in a near-zero gradient element (summed in another order by the all-reduce) can flip its sign:
    that weight moves up to 2 lr apart per step; the others agree to a small part of one step. The gradient norm,
    compared apart, shows the all-reduced gradient's scale."""
    diff = torch.cat([(got[k] - v).abs().flatten() for k, v in expected.items()])
    assert diff.max() <= 2 * LR * steps, f"a weight moved {diff.max() / LR:.2f} lr steps apart"
    close = (diff <= 0.05 * LR).float().mean().item()
    assert close >= 0.99, f"only {close:.2%} of the weights agree within 0.05 lr"


@pytest.mark.parametrize("family", [irpo, diffusion], ids=["irpo", "diffusion"])
def test_two_ranks_end_at_the_weights_of_one_rank(local_ray, family):
    """Rollouts are sampled in-process by a 1-rank learner that also trains on them; the group trains on the same."""
    one = Learner(_cfg(family), total_steps=STEPS)
    group = LearnerGroup(_cfg(family, num_ranks=2, micro_batch_images=1, ema_decay=0.9), total_steps=STEPS)
    try:
        for step in range(STEPS):
            rollout = family._rollout(one, step=step, b=B)
            stats_one, weights_one = one.update(rollout)
            stats_two, ref = group.update(ray.put(rollout))
            weights_one, weights_two = weights_one.tensors(), ray.get(ref).tensors()
            assert_same_adam_weights(weights_two, weights_one, steps=step + 1)
            assert stats_two["grad_norm"] == pytest.approx(stats_one["grad_norm"], rel=1e-4)
            assert stats_two["loss/total"] == pytest.approx(stats_one["loss/total"], rel=1e-4, abs=1e-7)
        version, _, _ = group.weights()
        assert version == STEPS and group.read(group.snapshot())["version"] == STEPS
        # every rank steps its EMA on the same all-reduced update: the ranks' EMAs agree bit for bit
        ema0, ema1 = (s["ema"] for s in ray.get([r.state.remote() for r in group.ranks]))
        assert ema0.keys() == weights_two.keys() and all(torch.equal(v, ema1[k]) for k, v in ema0.items())
    finally:
        group.shutdown()


def test_a_dead_rank_raises_learner_lost_and_a_checkpoint_restores_every_rank(local_ray):
    cfg = _cfg(irpo, num_ranks=2)
    one = Learner(cfg, total_steps=STEPS)
    group = LearnerGroup(cfg, total_steps=STEPS)
    first = irpo._rollout(one, step=0, b=B)
    group.update(ray.put(first))
    state = group.read(group.snapshot())
    ray.kill(group.ranks[1])
    with pytest.raises(LearnerLost, match="learner rank died"):
        group.update(ray.put(irpo._rollout(one, step=1, b=B)))
    fresh = LearnerGroup(cfg, total_steps=STEPS)
    try:
        fresh.load_state(state)
        one.update(first)
        second = irpo._rollout(one, step=1, b=B)
        _, expected = one.update(second)
        _, ref = fresh.update(ray.put(second))
        assert_same_adam_weights(ray.get(ref).tensors(), expected.tensors(), steps=2)
    finally:
        fresh.shutdown()


def test_a_learner_the_cluster_cannot_place_fails_with_the_request_named(local_ray):
    t0 = time.monotonic()
    with pytest.raises(PlacementError, match=r"learner\.gpus_per_rank.*GPU.*could not be placed within 2 s.*node"):
        LearnerGroup(_cfg(irpo, gpus_per_rank=1, ready_timeout_s=2), total_steps=1)
    assert time.monotonic() - t0 < 30
