"""Loaders: demo layout (stand-in photos), AdaIR's folder layout, paired folders; crops, ids, sets."""

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.config import DataConfig
from trainer.data import DataLayoutError, build_eval_sets, build_full_train_set, build_train_dataset
from trainer.demo.corpus import write_standin_corpus


def _cfg(root, **kw):
    return DataConfig(root=root, crop_size=32, **kw)


@pytest.fixture
def demo(tmp_path):
    return write_standin_corpus(tmp_path / "demo", n_train=3, n_test=2, size=(50, 70))


def test_demo_train_set_ids_items_and_crops(demo):
    cfg = _cfg(demo)
    ds = build_train_dataset(cfg)
    assert len(ds) == 3 * 7  # 3 photos x (3 noise levels + 4 other tasks)
    assert ds.ids == build_train_dataset(cfg).ids  # stable
    assert "denoise/sigma25/img1" in ds.ids and "lowlight/lowlight/img2" in ds.ids
    item = ds[ds.ids.index("derain/streaks/img0")]
    assert set(item) == {"id", "task", "degraded", "target"} and item["task"] == "derain"
    assert item["degraded"].shape == item["target"].shape == (3, 32, 32)
    assert not torch.equal(item["degraded"], item["target"])
    again = build_train_dataset(cfg)[ds.ids.index("derain/streaks/img0")]
    assert torch.equal(item["degraded"], again["degraded"]) and torch.equal(item["target"], again["target"])
    ds.set_epoch(1)
    moved = ds[ds.ids.index("derain/streaks/img0")]
    assert not torch.equal(moved["target"], item["target"])  # a new crop/flip each epoch


def test_crop_is_aligned_between_degraded_and_target(demo):
    cfg = _cfg(demo, tasks=["lowlight"])
    full = build_full_train_set(cfg)
    crops = build_train_dataset(cfg)
    for i in range(len(crops)):
        item, (deg, tgt) = crops[i], full.pair(i)
        # locate the target crop in one of the 8 orientations of the full target, then check the
        # degraded crop comes from the same window
        found = False
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(item["target"].flip(-1) if flip else item["target"], -k, dims=(1, 2))
                d = torch.rot90(item["degraded"].flip(-1) if flip else item["degraded"], -k, dims=(1, 2))
                win = tgt.unfold(1, 32, 1).unfold(2, 32, 1)  # (3, nh, nw, 32, 32)
                hits = (win - t[:, None, None]).abs().amax(dim=(0, 3, 4)) == 0
                if hits.any():
                    r, c = (int(v) for v in hits.nonzero()[0])
                    assert torch.equal(d, deg[:, r : r + 32, c : c + 32])
                    found = True
        assert found


def test_subset_ids_and_unknown_ids(demo):
    cfg = _cfg(demo)
    ids = ["dehaze/haze/img2", "denoise/sigma50/img0"]
    ds = build_train_dataset(cfg, ids=ids)
    assert ds.ids == ids and ds[0]["task"] == "dehaze"
    with pytest.raises(DataLayoutError, match="not in the training set"):
        build_train_dataset(cfg, ids=["dehaze/haze/nope"])


def test_eval_sets_full_images_cut_to_16(demo):
    sets = build_eval_sets(_cfg(demo))
    assert list(sets) == ["denoise_sigma15", "denoise_sigma25", "denoise_sigma50", "derain", "dehaze", "deblur", "lowlight"]
    item = sets["deblur"][0]
    assert item["degraded"].shape == item["target"].shape == (3, 48, 64)
    ood = build_eval_sets(_cfg(demo), ood=True)
    assert list(ood) == ["denoise", "derain", "dehaze", "deblur", "lowlight"]
    assert ood["deblur"][0]["id"] == "deblur/defocus/img0"
    assert not torch.equal(ood["deblur"][0]["degraded"], item["degraded"])
    assert build_eval_sets(_cfg(demo), crop=32)["derain"][1]["target"].shape == (3, 32, 32)


def test_missing_corpus_says_how_to_fetch(tmp_path):
    with pytest.raises(DataLayoutError, match="fetch_demo_photos"):
        build_train_dataset(_cfg(tmp_path / "empty"))


def _png(path, seed, size=(40, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255


def test_adair_layout_pairs_by_adair_naming(tmp_path):
    r = tmp_path / "data"
    _png(r / "Train/Denoise/c1.png", 0)
    rain_in, rain_gt = _png(r / "Train/Derain/rainy/rain-7.png", 1), _png(r / "Train/Derain/gt/norain-7.png", 2)
    _png(r / "Train/Dehaze/synthetic/part1/0003_0.8_0.2.png", 3)
    haze_gt = _png(r / "Train/Dehaze/original/0003.png", 4)
    _png(r / "Train/Deblur/blur/a.png", 5), _png(r / "Train/Deblur/sharp/a.png", 6)
    _png(r / "Train/Enhance/low/1.png", 7), _png(r / "Train/Enhance/gt/1.png", 8)
    _png(r / "test/denoise/bsd68/t.png", 9)
    _png(r / "test/derain/Rain100L/input/x.png", 10), _png(r / "test/derain/Rain100L/target/x.png", 11)
    _png(r / "test/dehaze/input/0001_0.9.png", 12), _png(r / "test/dehaze/target/0001.png", 13)
    _png(r / "test/deblur/gopro/input/g.png", 14), _png(r / "test/deblur/gopro/target/g.png", 15)
    _png(r / "test/enhance/lol/input/l.png", 16)
    lol_gt = _png(r / "test/enhance/lol/target/l.png", 17)
    cfg = DataConfig(source="adair", root=r, crop_size=16)
    full = build_full_train_set(cfg)
    assert full.ids == ["denoise/sigma15/c1", "denoise/sigma25/c1", "denoise/sigma50/c1", "derain/rain-7", "dehaze/0003_0.8_0.2", "deblur/a", "lowlight/1"]
    deg, tgt = full.pair(full.ids.index("derain/rain-7"))
    assert torch.equal(deg, rain_in[:, 4:36, :]) and torch.equal(tgt, rain_gt[:, 4:36, :])  # 40x48 cut to 32x48, centred
    assert torch.equal(full.pair(full.ids.index("dehaze/0003_0.8_0.2"))[1], haze_gt[:, 4:36, :])
    sets = build_eval_sets(cfg)
    assert {k: len(v) for k, v in sets.items()} == {"denoise_sigma15": 1, "denoise_sigma25": 1, "denoise_sigma50": 1, "derain": 1, "dehaze": 1, "deblur": 1, "lowlight": 1}
    assert torch.equal(sets["lowlight"][0]["target"], lol_gt[:, 4:36, :])
    assert len(build_eval_sets(cfg, ood=True)["denoise"]) == 5  # OOD from the 5 distinct clean test targets


def test_adair_layout_missing_target_is_named(tmp_path):
    r = tmp_path / "data"
    _png(r / "Train/Deblur/blur/a.png", 0)
    (r / "Train/Deblur/sharp").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match=r"blur/a\.png: no target named a"):
        build_full_train_set(DataConfig(source="adair", root=r, tasks=["deblur"]))


def test_paired_layout(tmp_path):
    r = tmp_path / "pairs"
    for split in ("train", "test"):
        _png(r / split / "derain/input/p.png", 1), _png(r / split / "derain/target/p.png", 2)
    cfg = DataConfig(source="paired", root=r, tasks=["derain"], crop_size=16)
    assert build_train_dataset(cfg).ids == ["derain/p"]
    assert build_train_dataset(cfg)[0]["degraded"].shape == (3, 16, 16)
    assert list(build_eval_sets(cfg)) == ["derain"]
    (r / "train/derain/target/p.png").unlink()
    with pytest.raises(DataLayoutError, match="no target"):
        build_train_dataset(cfg)


def test_duplicate_names_are_refused_with_the_files(tmp_path):
    r = tmp_path / "pairs"
    for task in ("derain", "deblur"):
        _png(r / "test" / task / "input/same.png", 1), _png(r / "test" / task / "target/same.png", 2)
    cfg = DataConfig(source="paired", root=r, tasks=["derain", "deblur"])
    assert list(build_eval_sets(cfg)) == ["derain", "deblur"]  # same name in two tasks is fine
    with pytest.raises(DataLayoutError, match="duplicate sample ids.*derain/target/same.png"):
        build_eval_sets(cfg, ood=True)  # but the OOD set draws every task from all targets
