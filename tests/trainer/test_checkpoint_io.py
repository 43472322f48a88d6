"""Checkpoint files: round trip, atomic folders, pruning, --resume resolution."""

import pytest
import torch

from trainer.checkpointing import CheckpointError, list_checkpoints, load_checkpoint, resolve_resume, save_checkpoint


def _learner_state(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3, generator=g)).sum().backward()
    opt.step()
    return {
        "policy": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "reference": {k: torch.zeros_like(v) for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "tracker": {"img-1": [0.1, 0.2]},
        "version": 7,
        "torch_rng": torch.get_rng_state(),
    }


def test_round_trip_keeps_every_part(tmp_path):
    state = _learner_state(0)
    rollout = {6: {"w": torch.arange(4.0)}}
    path = save_checkpoint(tmp_path, 7, state, rollout, {"data_position": 14, "num_images": 5}, keep=3)
    ck = load_checkpoint(path)
    assert ck.step == 7 and ck.extra["data_position"] == 14
    for k, v in state["policy"].items():
        assert torch.equal(ck.learner["policy"][k], v)
    assert torch.equal(ck.rollout_weights[6]["w"], torch.arange(4.0))
    assert ck.learner["tracker"] == {"img-1": [0.1, 0.2]} and ck.learner["version"] == 7
    assert torch.equal(ck.learner["torch_rng"], state["torch_rng"])
    exp_avg = state["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(ck.learner["optimizer"]["state"][0]["exp_avg"], exp_avg)
    assert (path / "policy.safetensors").is_file()


def test_pruning_and_incomplete_folders(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, _learner_state(step), {}, {}, keep=2)
    (tmp_path / ".tmp-step-00000008").mkdir()  # a save interrupted by a kill
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004", "step-00000006"]
    (tmp_path / "step-00000010").mkdir()  # no meta.json: broken, skipped by name (test_checkpoint_integrity)
    assert resolve_resume(tmp_path, "auto").path.name == "step-00000006"
    with pytest.raises(CheckpointError, match="--resume auto"):
        resolve_resume(tmp_path, "never")
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        resolve_resume(tmp_path, str(tmp_path / "step-00000010"))


def test_fresh_run_and_broken_checkpoint(tmp_path):
    assert resolve_resume(tmp_path / "none", "auto") is None
    assert resolve_resume(tmp_path / "none", "never") is None
    path = save_checkpoint(tmp_path, 1, _learner_state(1), {}, {}, keep=1)
    (path / "trainer_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="trainer_state.pt is damaged"):
        load_checkpoint(path)
