"""The EMA of the trainable weights (learner.ema_decay, diffusers' EMAModel): swapped in for evaluation and out
again without disturbing training (ratio 1 before the next update, bit-identical weights), adapters only under
LoRA, checkpointed and restored exactly, exported with --ema, and nothing at all when off."""

from __future__ import annotations

import math

import pytest
import torch

from devtools.tiny_latent import build_x4
from tests.trainer.test_diffusion_learner import TINY, _rollout
from trainer.actors.learner import Learner
from trainer.checkpointing import CheckpointError, load_checkpoint, save_checkpoint
from trainer.config import DiffusionConfig, TrainConfig
from trainer.export import export
from trainer.policies.diffusion import build_diffusion_policy
from trainer.preflight import check_policy_and_resume

TIMINGS = ("time/update", "time/weight_export")


def _cfg(ema: float | None, diffusion: dict | None = None, **sections) -> TrainConfig:
    return TrainConfig.model_validate({"policy": {"kind": "diffusion", "diffusion": diffusion or TINY}, "grpo": {"group_size": 4},
                                       "optim": {"lr": 1e-3}, "rollout": {"images_per_worker": 2}, "learner": {"ema_decay": ema}, **sections})


def _trained(cfg: TrainConfig, steps: int, side: int = 16, scale: int = 1) -> Learner:
    torch.manual_seed(0)
    learner = Learner(cfg, total_steps=8)
    for step in range(steps):
        learner.update(_rollout(learner, step, side=side, scale=scale))
    return learner


def _weights(learner: Learner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.policy.state_dict().items()}


def _untimed(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in TIMINGS}


def test_an_ema_swap_in_and_out_leaves_the_weights_and_the_next_update_bit_identical():
    a, b = _trained(_cfg(0.9), 2), _trained(_cfg(0.9), 2)
    plain = _trained(_cfg(None), 2)
    before = _weights(a)
    with a.ema_weights():
        swapped = _weights(a)
    assert any(not torch.equal(swapped[k], before[k]) for k in before)  # the EMA (decay 0.18 at step 2) was in
    assert all(torch.equal(v, before[k]) for k, v in _weights(a).items())
    a.state()  # a checkpoint swaps it in and out again
    nxt = _rollout(a, 2)
    (sa, pa), (sb, pb), (sp, pp) = a.update(nxt), b.update(nxt), plain.update(nxt)
    assert _untimed(sa) == _untimed(sb) == _untimed(sp)
    for k, v in pa.tensors().items():  # with and without swaps, with and without an EMA: one training run
        assert torch.equal(v, pb.tensors()[k]) and torch.equal(v, pp.tensors()[k]), k


@pytest.fixture(scope="module")
def x4(tmp_path_factory):
    return build_x4(tmp_path_factory.mktemp("ema-x4") / "x4")


def test_lora_ema_holds_the_adapters_keeps_ratio_one_after_a_swap_and_exports(x4, tmp_path):
    diffusion = {"pretrained": str(x4), "output_scale": 4, "sampling_steps": 3, "lora": {"rank": 4}}
    cfg = _cfg(0.9, diffusion, data={"tasks": ["sr"]})
    learner = _trained(cfg, 2, side=32, scale=4)
    adapters = [p for n, p in learner.policy.named_parameters() if "lora_" in n]
    assert len(learner.ema.shadow_params) == len(adapters) and [s.shape for s in learner.ema.shadow_params] == [p.shape for p in adapters]
    rollout = _rollout(learner, 2, side=32, scale=4)  # sampled with the live weights, as the rollout actors do
    x, traj = rollout.degraded, rollout.trajectory
    with learner.ema_weights():
        ema_log_prob = learner.policy.evaluate(x, traj).log_prob
    assert (ema_log_prob - traj.log_prob).abs().max() > 1e-5  # the EMA is another policy: a swap not undone would show
    state = learner.state()
    assert state["ema"] and all("lora_" in k for k in state["ema"])
    assert (learner.policy.evaluate(x, traj).log_prob - traj.log_prob).abs().max() < 1e-5
    stats, _ = learner.update(rollout)
    assert abs(math.log(stats["ratio/max"])) < 1e-5 and abs(math.log(stats["ratio/min"])) < 1e-5
    # `trainer.export --ema` merges the EMA's adapters: the exported folder is the swapped-in policy
    ckpt = save_checkpoint(tmp_path / "ckpt", 2, state, {}, {"config": cfg.model_dump_json()}, keep=1)
    exported = build_diffusion_policy(DiffusionConfig(pretrained=export(ckpt, tmp_path / "export", ema=True), output_scale=4, sampling_steps=3))
    assert (exported.evaluate(x, traj).log_prob - ema_log_prob).abs().max() < 1e-5


def test_resume_restores_the_ema_exactly(tmp_path):
    cfg = _cfg(0.9)
    a = _trained(cfg, 2)
    path = save_checkpoint(tmp_path, 2, a.state(), {}, {}, keep=1)
    assert (path / "ema.safetensors").is_file()
    b = Learner(cfg, total_steps=8)
    b.load_state(load_checkpoint(path).learner)
    nxt = _rollout(a, 2)
    a.update(nxt)
    b.update(nxt)
    sa, sb = a.state(), b.state()
    assert sa["ema_step"] == sb["ema_step"] == 3
    assert any(not torch.equal(v, sa["policy"][k]) for k, v in sa["ema"].items())
    for part in ("ema", "policy"):
        for k, v in sa[part].items():
            assert torch.equal(v, sb[part][k]), (part, k)


def test_ema_off_changes_nothing_and_a_mismatched_resume_is_refused(tmp_path):
    off_cfg = _cfg(None, checkpoint={"dir": str(tmp_path / "on")})
    off = _trained(off_cfg, 1)
    state = off.state()
    assert off.ema is None and state["ema"] is None and state["ema_step"] is None
    path = save_checkpoint(tmp_path / "off", 1, state, {}, {"config": off_cfg.model_dump_json()}, keep=1)
    assert not (path / "ema.safetensors").exists() and load_checkpoint(path).learner["ema"] is None
    with pytest.raises(ValueError, match="no EMA"):
        export(path, tmp_path / "export", ema=True)
    with pytest.raises(ValueError, match="ema_decay is off"), off.ema_weights():
        pass
    with pytest.raises(ValueError, match="has no EMA"):
        Learner(_cfg(0.9), total_steps=8).load_state(state)
    on_state = _trained(_cfg(0.9), 1).state()
    with pytest.raises(ValueError, match="has an EMA"):
        Learner(off_cfg, total_steps=8).load_state(on_state)
    save_checkpoint(tmp_path / "on", 1, on_state, {}, {"num_images": 3}, keep=1)
    with pytest.raises(CheckpointError, match="has an EMA"):  # before any work
        check_policy_and_resume(off_cfg, "auto", num_images=3)
