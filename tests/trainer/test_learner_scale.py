"""The learner at scale, without Ray: micro-batches give the whole batch's gradient (both families),
the exported state is on the CPU, and a batch's stats merge from its slices."""

import pytest
import torch

from tests.trainer import test_diffusion_learner as diffusion
from tests.trainer import test_grpo_learner as irpo
from trainer.actors.learner import Learner, merge_stats, shares

B = 4  # images per step: micro-batches of 3 leave an uneven last one


def _cfg(family, micro: int | None):
    if family is irpo:
        cfg = irpo._cfg(adaptive_weighting=True, ppo_epochs=2)
    else:
        cfg = diffusion._cfg({"adaptive_weighting": True, "gt_likelihood_coef": 0.1, "sft_coef": 1.0}, ppo_epochs=2)
    return cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"micro_batch_images": micro}),
                                  "rollout": cfg.rollout.model_copy(update={"images_per_worker": B})})


def _grads(family, micro: int | None, epoch: int) -> tuple[list[torch.Tensor], dict]:
    torch.manual_seed(0)
    learner = Learner(_cfg(family, micro), total_steps=4)
    rollout = family._rollout(learner, b=B)
    _, step_loss = learner.objective(learner, rollout)
    stats = learner._backward(step_loss, epoch, B, 0)
    return [p.grad.clone() for p in learner.policy.parameters() if p.grad is not None], stats


@pytest.mark.parametrize("family", [irpo, diffusion], ids=["irpo", "diffusion"])
@pytest.mark.parametrize("micro", [1, 3])
def test_micro_batches_accumulate_the_whole_batch_gradient(family, micro):
    whole, whole_stats = _grads(family, None, epoch=1)
    parts, part_stats = _grads(family, micro, epoch=1)
    assert len(whole) == len(parts) and sum(g.abs().sum() for g in whole) > 0
    # float32 rounding (1e-6 to 2e-5 of the largest gradient) shows where an image's gradients cancel; a term
    # coupled across the batch but computed per slice (a normaliser, a reference, a noise draw) differs by percents
    scale = max(a.abs().max().item() for a in whole)
    for a, b in zip(whole, parts):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4 * scale)
    assert part_stats["loss/total"] == pytest.approx(whole_stats["loss/total"], rel=1e-5)
    assert part_stats["ratio/max"] == pytest.approx(whole_stats["ratio/max"], rel=1e-6)


class OnAccelerator(torch.Tensor):
    """A tensor that says it lives on an accelerator until it is copied with .cpu() or .to(): a CPU test's
    stand-in for the GPU-resident optimiser moments whose pickles a GPU-less driver cannot load."""

    @property
    def device(self):
        return torch.device("cuda", 0)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs or {})
        if func in (torch.Tensor.cpu, torch.Tensor.to) or not isinstance(out, torch.Tensor):
            return out
        return out.as_subclass(cls)


def _devices(obj) -> set[str]:
    if isinstance(obj, torch.Tensor):
        return {str(obj.device)}
    if isinstance(obj, (dict, list, tuple)):
        values = obj.values() if isinstance(obj, dict) else obj
        return set().union(set(), *(_devices(v) for v in values))
    return set()


def test_exported_state_is_on_the_cpu_and_restores_exactly():
    learner = Learner(irpo._cfg(), total_steps=4)
    learner.update(irpo._rollout(learner))
    for moments in learner.optimizer.state.values():
        for k, v in moments.items():
            moments[k] = v.as_subclass(OnAccelerator)
    assert "cuda:0" in _devices(learner.optimizer.state_dict())  # the tag is seen where it is
    state = learner.state()
    assert _devices(state) == {"cpu"}
    assert "cuda_rng" in state
    fresh = Learner(irpo._cfg(), total_steps=4)
    fresh.load_state(state)
    for a, b in zip(fresh.optimizer.state.values(), learner.optimizer.state.values()):
        assert all(torch.equal(a[k], b[k].as_subclass(torch.Tensor)) for k in a)


def test_shares_cover_the_groups_and_stats_merge_by_share():
    assert shares(5, 2) == [(0, 2), (2, 5)] and shares(2, 2) == [(0, 1), (1, 2)]
    merged = merge_stats([(0.25, {"a": 1.0, "ratio/max": 2.0, "ratio/min": 0.5, "lr": 3.0}),
                          (0.75, {"a": 3.0, "ratio/max": 1.0, "ratio/min": 0.9, "lr": 3.0})])
    assert merged == {"a": 2.5, "ratio/max": 2.0, "ratio/min": 0.5, "lr": 3.0}


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no native bf16")
def test_bf16_autocast_keeps_the_log_densities_in_float32():
    cfg = irpo._cfg()
    cfg = cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"precision": "bf16"})})
    learner = Learner(cfg, total_steps=2)
    rollout = irpo._rollout(learner)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ev = learner.policy.evaluate(rollout.degraded, rollout.trajectory)
    assert ev.log_prob.dtype == ev.alpha.dtype == torch.float32
    stats, _ = learner.update(rollout)
    assert abs(stats["ratio/max"] - 1) < 0.05  # bf16 forward against float32 sampling: close, not equal
