"""Evaluation: numbers agree with scikit-image called directly; table form; tiling; conventions."""

import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.trainer.policy_fixtures import seeded_policy
from trainer.config import TrainConfig
from trainer.data import build_eval_sets
from trainer.demo.corpus import write_standin_corpus
from trainer.evaluate import TABLE2_COLUMNS, evaluate, format_table, input_baseline, write_results
from trainer.inference import restore
from trainer.metrics import psnr_ssim
from trainer.mining import mine, read_manifest
from trainer.model import model_preset
from trainer.policies import build_policy



@pytest.fixture
def setup(tmp_path):
    root = write_standin_corpus(tmp_path / "demo", n_train=1, n_test=2, size=(40, 56))
    cfg = TrainConfig(model=model_preset("micro"), data={"root": root, "tasks": ["denoise", "deblur"], "noise_sigmas": [25]})
    return cfg, seeded_policy(0, cfg.model)


def _hwc(t):
    return t.detach().clamp(0, 1).permute(1, 2, 0).double().numpy()


def test_numbers_agree_with_skimage_called_directly(setup):
    cfg, policy = setup
    res = evaluate(cfg, policy)
    assert list(res["columns"]) == ["denoise", "deblur"] and res["convention"] == "adair"
    sets = build_eval_sets(cfg.data)
    for rec in res["per_image"]:
        ds = sets[rec["column"]]
        item = ds[ds.ids.index(rec["id"])]
        with torch.no_grad():
            out = policy.deterministic(item["degraded"][None])[0]
        gt, x = _hwc(item["target"]), _hwc(out)
        assert rec["psnr"] == pytest.approx(peak_signal_noise_ratio(gt, x, data_range=1), abs=1e-4)
        assert rec["ssim"] == pytest.approx(structural_similarity(gt, x, data_range=1, channel_axis=2), abs=1e-5)
        assert rec["input_psnr"] == pytest.approx(peak_signal_noise_ratio(gt, _hwc(item["degraded"]), data_range=1), abs=1e-6)
    for col, c in res["columns"].items():
        rows = [r for r in res["per_image"] if r["column"] == col]
        assert c["n"] == 2 and c["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))
    assert res["average"]["ssim"] == pytest.approx(np.mean([c["ssim"] for c in res["columns"].values()]))
    assert evaluate(cfg, policy)["columns"] == res["columns"]  # deterministic


def test_basicsr_convention_is_y_channel_gaussian_ssim_with_border_crop():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 40, 40, generator=g)
    out = (gt + 0.05 * torch.randn(3, 40, 40, generator=g)).clamp(0, 1)
    psnr, ssim = psnr_ssim(out, gt, "basicsr", crop_border=4)

    def y(t):
        rgb = np.round(t.permute(1, 2, 0).double().numpy() * 255) / 255
        return (16 + rgb @ np.array([65.481, 128.553, 24.966]))[4:-4, 4:-4]

    assert psnr == pytest.approx(peak_signal_noise_ratio(y(gt), y(out), data_range=255))
    assert ssim == pytest.approx(structural_similarity(y(gt), y(out), data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    assert psnr != pytest.approx(psnr_ssim(out, gt)[0], abs=0.1)  # the conventions do differ


def test_table_json_and_ood(setup, tmp_path):
    cfg, policy = setup
    res = evaluate(cfg, policy, ood=True)
    assert res["ood"] and list(res["columns"]) == ["denoise", "deblur"]
    table = format_table({"pre": res, "post": res})
    assert "| Method | denoise | deblur | Average (2 columns) |" in table and "| post |" in table and "OOD" in table
    assert res["average_table2"] is None and "Table 2" not in table  # not the paper's five columns
    assert f"{res['average']['psnr']:.2f} / {res['average']['ssim']:.4f}" in table
    json_path, md_path = write_results(res, tmp_path / "out" / "eval")
    assert json.loads(json_path.read_text())["columns"] == res["columns"]
    assert "input (degraded)" in md_path.read_text()
    base = input_baseline(res)
    assert base["columns"]["deblur"]["psnr"] == pytest.approx(np.mean([r["input_psnr"] for r in res["per_image"] if r["column"] == "deblur"]))


def test_tiled_restore_covers_the_image_with_each_window_output(setup):
    _, policy = setup
    x = torch.rand(1, 3, 48, 72, generator=torch.Generator().manual_seed(2))
    out = restore(policy, x, tile=32, overlap=8)
    assert out.shape == x.shape
    with torch.no_grad():
        first = policy.deterministic(x[..., :32, :32])
    # pixels only the top-left window covers equal that window's own output
    torch.testing.assert_close(out[..., :16, :24], first[..., :16, :24])
    assert torch.equal(restore(policy, x, tile=None), restore(policy, x, tile=96))  # tile larger than the image
    with pytest.raises(ValueError, match="multiple of 8"):
        restore(policy, x, tile=30, overlap=8)


def test_table2_average_uses_five_columns_with_denoising_at_sigma_25(tmp_path):
    """The paper preset denoises at sigma 15/25/50 (7 columns); IRPO's Table 2 averages 5 (sigma 25 only)."""
    root = write_standin_corpus(tmp_path / "demo", n_train=1, n_test=1, size=(32, 32))
    cfg = TrainConfig(model=model_preset("micro"), data={"root": root, "noise_sigmas": [15, 25, 50]})
    res = evaluate(cfg, seeded_policy(0, cfg.model))
    cols = res["columns"]
    assert len(cols) == 7 and set(TABLE2_COLUMNS) <= set(cols)
    five = [cols[c] for c in ("denoise_sigma25", "derain", "dehaze", "deblur", "lowlight")]
    for m in ("psnr", "ssim"):
        assert res["average_table2"][m] == pytest.approx(np.mean([c[m] for c in five]))
        assert res["average"][m] == pytest.approx(np.mean([c[m] for c in cols.values()]))
    assert res["average_table2"]["psnr"] != pytest.approx(res["average"]["psnr"])
    table = format_table({"input": input_baseline(res), "model": res})
    assert "| Average (7 columns) | Table 2 average (5 columns, denoise sigma 25) |" in table
    assert f"{res['average']['psnr']:.2f} / {res['average']['ssim']:.4f} | {res['average_table2']['psnr']:.2f} / {res['average_table2']['ssim']:.4f} |" in table


def test_a_diffusion_policy_is_evaluated_and_mined_by_the_same_code(tmp_path):
    root = write_standin_corpus(tmp_path / "demo", n_train=2, n_test=1, size=(40, 56))
    cfg = TrainConfig(policy={"kind": "diffusion", "diffusion": {"block_out_channels": [16, 32], "sampling_steps": 2}},
                      data={"root": root, "tasks": ["denoise"], "noise_sigmas": [25]},
                      mining={"manifest": tmp_path / "m.jsonl", "subset": tmp_path / "s.json", "fraction": 0.5})
    torch.manual_seed(0)
    policy = build_policy(cfg.policy_section).eval()
    first, again = evaluate(cfg, policy), evaluate(cfg, policy)
    assert list(first["columns"]) == ["denoise"] and first["per_image"] == again["per_image"]  # the deterministic chain
    assert mine(cfg, policy) and len(read_manifest(cfg.mining.manifest)) == 2
