"""Every kind of checkpoint damage, through `trainer/run.py --resume auto`: a named fallback to the
newest intact checkpoint, or a clear stop when none is intact; always before Ray starts, never a
traceback and never a silent fresh start.

The reward URL points where nothing listens: a run that got past the checkpoint checks stops at
the service check, which comes right after them and still before Ray.
"""

import json
import logging
import shutil

import pytest
import ray
import torch
import yaml

from tests.trainer.run_fixtures import tiny_config, write_photos
from tests.trainer.test_checkpoint_integrity import CORRUPTIONS
from trainer.checkpointing import save_checkpoint
from trainer.model import RestorationPolicy
from trainer.run import main

NUM_IMAGES = 3  # write_photos' training photos, one task, one noise level


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-faults")
    cfg = tiny_config(root / "run", write_photos(root / "photos"), "http://127.0.0.1:9")
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    policy = RestorationPolicy(cfg.model)
    weights = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    return path, cfg.checkpoint.dir, weights


def _save(root, step, weights, rollout_versions=()):
    learner = {"policy": weights, "reference": weights, "optimizer": {}, "tracker": None, "version": step, "torch_rng": torch.get_rng_state()}
    return save_checkpoint(root, step, learner, {v: weights for v in rollout_versions}, {"num_images": NUM_IMAGES, "faults": {}}, keep=5)


def _run(config, capsys, caplog) -> tuple[int, str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        code = main(["--config", str(config), "--resume", "auto"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err + caplog.text


def _two_checkpoints(ckpt_dir, weights):
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    _save(ckpt_dir, 2, weights)
    return _save(ckpt_dir, 4, weights, rollout_versions=(3,))


def test_intact_checkpoints_pass_the_checks(run_config, capsys, caplog):
    config, ckpt_dir, weights = run_config
    _two_checkpoints(ckpt_dir, weights)
    code, out = _run(config, capsys, caplog)
    assert code == 2 and "reward service at http://127.0.0.1:9 is not reachable" in out
    assert "skipping" not in out and "Traceback" not in out


@pytest.mark.parametrize("damage", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_damage_is_named_and_found_before_ray(run_config, damage, capsys, caplog):
    config, ckpt_dir, weights = run_config
    newest = _two_checkpoints(ckpt_dir, weights)
    CORRUPTIONS[damage](newest)
    code, out = _run(config, capsys, caplog)
    assert code == 2 and "Traceback" not in out
    assert "skipping a broken checkpoint: " in out and "step-00000004" in out
    assert "resuming from step-00000002, the newest intact checkpoint" in out
    assert "reward service at http://127.0.0.1:9 is not reachable" in out  # got past the checkpoint checks

    shutil.rmtree(ckpt_dir / "step-00000002")  # now nothing intact is left
    code, out = _run(config, capsys, caplog)
    assert code == 2 and "Traceback" not in out
    assert "holds no intact checkpoint to resume from" in out and "step-00000004" in out
    assert "not reachable" not in out  # stopped at the checkpoints, not by starting afresh
    assert not ray.is_initialized()
