"""Bad config or data stops `trainer/run.py` with a clear message before any work (no Ray, no service)."""

import json

import ray
import yaml

from tests.trainer.run_fixtures import tiny_config, write_photos
from trainer.config import TrainConfig
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


def test_unreachable_reward_service_and_bad_weights_stop_before_ray(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos")
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9")  # port 9: nothing listens
    assert main(["--config", _write(tmp_path, cfg)]) == 2
    assert "reward service at http://127.0.0.1:9 is not reachable" in capsys.readouterr().err
    cfg = tiny_config(tmp_path / "run", photos, "http://127.0.0.1:9", reward={"weights": {"psnrr": 1.0}})
    assert main(["--config", _write(tmp_path, cfg)]) == 2
    assert "psnrr" in capsys.readouterr().err
    assert not ray.is_initialized()
