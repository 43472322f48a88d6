"""Bad config or data stops `trainer/run.py` with a clear message before any work (no Ray, no service)."""

import json

import ray
import yaml

from tests.trainer.run_fixtures import tiny_config, write_photos
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
