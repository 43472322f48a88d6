"""Hard-sample mining: per-task worst fraction, the random control, manifest and subset files."""

import json
import math

import pytest

from tests.trainer.policy_fixtures import seeded_policy
from trainer.config import TrainConfig
from trainer.data import build_train_dataset
from trainer.demo.corpus import write_standin_corpus
from trainer.mining import mine, select
from trainer.model import model_preset
from trainer.data.post_training import read_subset



def _records():
    rows = []
    for task, n in (("denoise", 10), ("dehaze", 4)):
        for i in range(n):
            rows.append({"id": f"{task}/x/{i:02d}", "task": task, "psnr": 40.0 - ((i * 7) % n), "ssim": 0.5 + 0.01 * i})
    return rows


def test_hardest_fraction_per_task():
    recs = _records()
    ids = select(recs, 0.3, "psnr", "hardest", seed=0)
    for task, n in (("denoise", 10), ("dehaze", 4)):
        mine_ = [i for i in ids if i.startswith(task)]
        assert len(mine_) == math.ceil(0.3 * n)
        worst = sorted((r for r in recs if r["task"] == task), key=lambda r: r["psnr"])[: len(mine_)]
        assert set(mine_) == {r["id"] for r in worst}
    by_ssim = select(recs, 0.3, "ssim", "hardest", seed=0)
    assert [i for i in by_ssim if i.startswith("denoise")] == ["denoise/x/00", "denoise/x/01", "denoise/x/02"]


def test_random_control_is_seeded_and_not_the_hardest():
    recs = _records()
    a = select(recs, 0.5, "psnr", "random", seed=1)
    assert a == select(recs, 0.5, "psnr", "random", seed=1)
    assert a != select(recs, 0.5, "psnr", "random", seed=2)
    assert sum(i.startswith("denoise") for i in a) == 5 and sum(i.startswith("dehaze") for i in a) == 2
    assert {frozenset(select(recs, 0.5, "psnr", "random", seed=s)) for s in range(5)} != {frozenset(select(recs, 0.5, "psnr", "hardest", seed=0))}


def test_mine_writes_manifest_and_a_subset_the_trainer_reads(tmp_path):
    root = write_standin_corpus(tmp_path / "demo", n_train=4, n_test=1, size=(40, 48))
    cfg = TrainConfig(
        model=model_preset("micro"),
        data={"root": root, "tasks": ["deblur", "lowlight"]},
        mining={"fraction": 0.5, "crop": 32, "batch_size": 3, "manifest": tmp_path / "m/manifest.jsonl", "subset": tmp_path / "m/subset.json"},
    )
    ids = mine(cfg, seeded_policy(0, cfg.model))
    lines = [json.loads(x) for x in (tmp_path / "m/manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and {r["task"] for r in lines} == {"deblur", "lowlight"}
    assert all({"id", "task", "psnr", "ssim"} <= set(r) for r in lines)
    assert len(ids) == 4 and read_subset(cfg.mining.subset) == ids
    for task in ("deblur", "lowlight"):
        rows = sorted((r for r in lines if r["task"] == task), key=lambda r: r["psnr"])
        assert {r["id"] for r in rows[:2]} == {i for i in ids if i.startswith(task)}
    assert build_train_dataset(cfg.data, ids=ids).ids == ids


def test_fraction_out_of_range_is_refused():
    with pytest.raises(ValueError):
        TrainConfig(mining={"fraction": 1.5})
