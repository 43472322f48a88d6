"""Bad config or data stops `trainer/run.py` with a clear message before any work (no Ray, no service)."""

import json

import pytest
import ray
import torch
import yaml

from devtools.tiny_latent import build_x4
from tests.trainer.run_fixtures import tiny_config, write_photos
from trainer.checkpointing import CheckpointError, save_checkpoint
from trainer.config import DiffusionLoRAConfig, TrainConfig, load_config
from trainer.model import RestorationPolicy, model_preset
from trainer.policies import build_policy
from trainer.preflight import check_policy_and_resume
from trainer.run import main


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    return str(path)


def test_unknown_key_and_bad_value_are_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo: {group_sise: 4}\n")
    assert main(["--config", str(bad)]) == 2
    assert "group_sise" in capsys.readouterr().err
    bad.write_text("grpo: {group_size: 1}\n")
    assert main(["--config", str(bad)]) == 2
    assert "group_size" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_adaptive_weighting_with_one_image_per_step_is_refused(tmp_path, capsys):
    # w = ||y - g|| / max over the step's images is 1 for a lone image: no supervised term would remain
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo: {adaptive_weighting: true}\nrollout: {num_workers: 1, images_per_worker: 1}\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "grpo.adaptive_weighting needs at least 2 images per learner step, got 1" in err and "zeroes the supervised terms" in err
    two_actors = {"grpo": {"adaptive_weighting": True}, "rollout": {"num_workers": 2, "images_per_worker": 1}}
    assert TrainConfig.model_validate(two_actors).grpo.adaptive_weighting


def test_missing_subset_and_data_stop_before_ray(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos")
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9", grpo={"train_on": "subset"}, mining={"subset": str(tmp_path / "nope.json")})
    assert main(["--config", _write(tmp_path, cfg)]) == 2
    assert "run mining first" in capsys.readouterr().err
    (tmp_path / "subset.json").write_text(json.dumps(["denoise/sigma25/not-a-photo"]))
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9", grpo={"train_on": "subset"}, mining={"subset": str(tmp_path / "subset.json")})
    assert main(["--config", _write(tmp_path, cfg)]) == 2
    assert "not in the training set" in capsys.readouterr().err
    cfg = tiny_config(tmp_path / "run", tmp_path / "empty", "http://127.0.0.1:9")
    assert main(["--config", _write(tmp_path, cfg)]) == 2
    assert "no photos in" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_unreachable_reward_service_stops_before_ray(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos")
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9")  # port 9: nothing listens
    assert main(["--config", _write(tmp_path, cfg)]) == 2
    assert "reward service at http://127.0.0.1:9 is not reachable" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_a_reward_weight_typo_fails_at_config_load(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("reward: {weights: {psnrr: 1.0}}\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "reward.weights.psnrr" in err and "Extra inputs are not permitted" in err
    bad.write_text("reward: {weights: {psnr: -1}}\n")
    assert main(["--config", str(bad)]) == 2
    assert "reward.weights.psnr" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_unreadable_config_and_bad_overrides_are_named(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    assert main(["--config", str(cfg)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    cfg.write_text("name: demo\nreward:\n  weights: null\n")
    assert main(["--config", str(cfg), "--set", "name.x=1"]) == 2
    assert "name is a value ('demo'), not a section" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--set", "reward..x=1"]) == 2
    assert "not of the form a.b=value" in capsys.readouterr().err
    # weights: null in the file, one weight set on the command line: a section is made for it
    assert load_config(cfg, ["reward.weights.psnr=0.3"]).reward.weights.psnr == 0.3


def test_bad_policy_weights_and_checkpoints_stop_before_ray(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos")
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9", model={"checkpoint": str(tmp_path / "missing.safetensors")})
    assert main(["--config", _write(tmp_path, cfg)]) == 2
    assert "model.checkpoint: weights file not found" in capsys.readouterr().err

    # a checkpoint written for another model size
    other = RestorationPolicy(model_preset("tiny"))
    state = {k: v.detach().clone() for k, v in other.state_dict().items()}
    learner = {"policy": state, "reference": state, "optimizer": {}, "tracker": None, "version": 2, "torch_rng": torch.get_rng_state()}
    path = save_checkpoint(tmp_path / "run" / "checkpoints", 2, learner, {}, {"num_images": 3}, keep=2)
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9")
    assert main(["--config", _write(tmp_path, cfg), "--resume", "auto"]) == 2
    assert "do not fit the configured model" in capsys.readouterr().err

    (path / "policy.safetensors").write_bytes(b"\0" * 64)
    assert main(["--config", _write(tmp_path, cfg), "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint" in err and "policy.safetensors is damaged" in err
    assert not ray.is_initialized()


def test_the_diffusion_family_is_checked_before_ray_too(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos")
    policy = {"kind": "diffusion", "diffusion": {"block_out_channels": [16, 32], "sampling_steps": 4, "pretrained": str(tmp_path / "no-unet")}}
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9", policy=policy)
    assert main(["--config", _write(tmp_path, cfg)]) == 2
    assert "policy.diffusion.pretrained: diffusion pretrained=" in capsys.readouterr().err

    # an AdaIR checkpoint under a diffusion config
    state = {k: v.detach().clone() for k, v in RestorationPolicy(model_preset("micro")).state_dict().items()}
    learner = {"policy": state, "reference": state, "optimizer": {}, "tracker": None, "version": 2, "torch_rng": torch.get_rng_state()}
    save_checkpoint(tmp_path / "run" / "checkpoints", 2, learner, {}, {"num_images": 3}, keep=2)
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9", policy={**policy, "diffusion": {**policy["diffusion"], "pretrained": None}})
    assert main(["--config", _write(tmp_path, cfg), "--resume", "auto"]) == 2
    assert "do not fit the configured model" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_old_learner_fields_name_their_new_place_and_a_rank_needs_an_image(tmp_path, capsys):
    bad = tmp_path / "old.yaml"
    bad.write_text("rollout: {learner_gpus: 1, learner_cpus: 4}\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "rollout.learner_gpus -> learner.gpus_per_rank" in err and "rollout.learner_cpus -> learner.cpus_per_rank" in err
    bad.write_text("learner: {num_ranks: 3}\nrollout: {num_workers: 1, images_per_worker: 2}\n")
    assert main(["--config", str(bad)]) == 2
    assert "learner.num_ranks=3 exceeds the 2 images per step" in capsys.readouterr().err


def test_a_run_that_stops_prints_the_exact_resume_command(tmp_path, capsys, monkeypatch):
    import trainer.run as run

    cfg = tiny_config(tmp_path / "run", tmp_path, "http://127.0.0.1:9")
    save_checkpoint(cfg.checkpoint.dir, 2, {"policy": {}, "reference": {}, "version": 2}, {}, {}, keep=1)

    def dies(cfg, resume):
        raise run.RunError("a learner rank died: killed; the learner group was restarted 2 time(s) already (learner.max_restarts)")

    monkeypatch.setattr(run, "train", dies)
    path = _write(tmp_path, cfg)
    assert main(["--config", path, "--set", "optim.lr=0.001"]) == 2
    err = capsys.readouterr().err
    assert f"python trainer/run.py --config {path} --set optim.lr=0.001 --resume auto" in err

def test_a_lora_checkpoint_of_a_pipeline_folder_passes_preflight_and_a_wrong_one_is_named(tmp_path):
    """A pipeline folder cannot be built on the meta device (from_pretrained refuses), and a LoRA run's reference
    file is empty (the adapters-off base): preflight checks the adapters against the folder's policy and the
    reference against the policy's own shared reference."""
    folder = build_x4(tmp_path / "x4")
    photos = write_photos(tmp_path / "photos")
    policy = {"kind": "diffusion", "diffusion": {"pretrained": str(folder), "sampling_steps": 3, "lora": {"rank": 2}}}
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9", policy=policy)
    adapters = build_policy(cfg.policy_section).state_dict()
    assert adapters and all("lora_" in k for k in adapters)

    def checkpoint(step, policy_state, reference_state):
        learner = {"policy": policy_state, "reference": reference_state, "optimizer": {}, "tracker": None, "version": step, "torch_rng": torch.get_rng_state()}
        return save_checkpoint(cfg.checkpoint.dir, step, learner, {step: policy_state}, {"num_images": 3}, keep=5)

    checkpoint(2, adapters, {})
    assert check_policy_and_resume(cfg, "auto", 3).step == 2
    checkpoint(4, adapters, adapters)  # a reference with weights: not what a LoRA run writes
    with pytest.raises(CheckpointError, match="its reference do not fit the configured model"):
        check_policy_and_resume(cfg, "auto", 3)
    other = build_policy(cfg.policy_section.model_copy(update={"lora": DiffusionLoRAConfig(rank=4)})).state_dict()
    checkpoint(6, other, {})  # rank 4 adapters under a rank 2 config
    with pytest.raises(CheckpointError, match="its policy do not fit the configured model"):
        check_policy_and_resume(cfg, "auto", 3)
