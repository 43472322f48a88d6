"""The reward-hacking watch (trainer/watch.py): its verdict, its series, and its held-out gold pairs."""

from __future__ import annotations

import json

import pytest

from tests.trainer.run_fixtures import tiny_config, write_photos
from trainer.data.post_training import TrainDataError, gold_ids, load_training_data
from trainer.watch import Watch, WatchPoint, hacking_warning


def point(step, reward, psnr, ssim=None):
    return WatchPoint(step, list(reward), list(psnr), list(ssim if ssim is not None else [0.8] * len(reward)), None)


BASE = point(0, [0.50, 0.52, 0.48, 0.51], [25.0, 24.0, 26.0, 25.5], [0.80, 0.82, 0.79, 0.81])


def test_r_up_while_psnr_down_beyond_both_intervals_warns():
    after = point(10, [0.60, 0.63, 0.57, 0.61], [24.0, 23.1, 24.9, 24.4], [0.80, 0.82, 0.79, 0.81])
    warning = hacking_warning(BASE, after)
    assert warning is not None and "PSNR" in warning and "SSIM" not in warning and "steps 0 and 10" in warning


def test_r_up_with_gold_metrics_up_is_no_warning():
    after = point(10, [0.60, 0.63, 0.57, 0.61], [26.0, 25.1, 26.9, 26.4], [0.81, 0.83, 0.80, 0.82])
    assert hacking_warning(BASE, after) is None


def test_changes_inside_their_noise_are_no_warning():
    # R rises on average but one pair falls: its interval covers 0
    after = point(10, [0.70, 0.40, 0.60, 0.55], [24.0, 23.1, 24.9, 24.4])
    assert hacking_warning(BASE, after) is None
    # R clearly up, PSNR down on average but not beyond its interval
    after = point(10, [0.60, 0.63, 0.57, 0.61], [23.0, 25.0, 25.0, 26.0])
    assert hacking_warning(BASE, after) is None


def test_ssim_fall_alone_warns():
    after = point(10, [0.60, 0.63, 0.57, 0.61], [25.0, 24.0, 26.0, 25.5], [0.70, 0.73, 0.68, 0.72])
    assert "SSIM" in hacking_warning(BASE, after)


def test_watch_compares_each_point_with_the_one_window_points_earlier_and_round_trips():
    watch = Watch(window=2)
    bad = point(20, [0.60, 0.63, 0.57, 0.61], [24.0, 23.1, 24.9, 24.4])
    assert watch.add(BASE) is None
    assert watch.add(point(10, BASE.reward, BASE.psnr)) is None  # only one point before it: nothing to compare
    assert watch.add(bad) is not None  # compared with BASE (two points earlier)
    again = Watch(window=2)
    again.load_state(json.loads(json.dumps(watch.state())))
    assert again.points == watch.points and again.warnings == watch.warnings


@pytest.fixture
def photos(tmp_path):
    return write_photos(tmp_path / "photos")


def test_gold_pairs_are_seeded_outside_the_post_training_set(tmp_path, photos):
    subset = tmp_path / "subset.json"
    subset.write_text(json.dumps(["denoise/sigma25/astronaut"]))
    cfg = tiny_config(tmp_path, photos, "http://127.0.0.1:1", data={"tasks": ["denoise", "derain"]},
                      grpo={"train_on": "subset"}, mining={"subset": str(subset)}, watch={"every_steps": 2, "images": 3})
    ids = gold_ids(cfg)
    assert len(ids) == 3 and "denoise/sigma25/astronaut" not in ids
    assert ids == gold_ids(cfg)  # the same draw every time
    other = gold_ids(cfg.model_copy(update={"seed": 1}))
    assert len(other) == 3 and "denoise/sigma25/astronaut" not in other


def test_with_train_on_all_the_gold_pairs_leave_the_training_set(tmp_path, photos):
    cfg = tiny_config(tmp_path, photos, "http://127.0.0.1:1", data={"tasks": ["denoise", "derain"]}, watch={"every_steps": 2, "images": 2})
    held_out = set(gold_ids(cfg))
    trained = set(load_training_data(cfg).ids)
    assert len(trained) == 6 - 2 and not held_out & trained
    off = cfg.model_copy(update={"watch": cfg.watch.model_copy(update={"every_steps": 0})})
    assert len(load_training_data(off).ids) == 6


def test_too_few_held_out_pairs_stop_with_the_setting_to_change(tmp_path, photos):
    cfg = tiny_config(tmp_path, photos, "http://127.0.0.1:1", watch={"every_steps": 2, "images": 5})
    with pytest.raises(TrainDataError, match="watch.images=5"):
        gold_ids(cfg)


def test_wandb_switched_on_without_the_package_stops_with_the_install_command(monkeypatch):
    import sys

    from trainer.config import ConfigError
    from trainer.metrics_log import new_wandb_id

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install '\.\[wandb\]'"):
        new_wandb_id()
