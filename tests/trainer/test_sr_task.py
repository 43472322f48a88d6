"""The sr task: the degradation (sizes and Real-ESRGAN's order), crops over one scene, the run's settings checked
before any work, latent models refusing the other task kind, and mining/evaluation measured at the output size."""

from __future__ import annotations

import kornia
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from devtools.tiny_latent import BUILDERS
from tests.trainer.run_fixtures import tiny_config, write_photos
from trainer.config import DiffusionConfig, SrConfig
from trainer.data import build_eval_sets, build_train_dataset
from trainer.data.sr import downscale, sr_degradation
from trainer.evaluate import evaluate
from trainer.metrics import at_size, psnr_ssim
from trainer.mining import score_training_set
from trainer.policies.diffusion import build_diffusion_policy

SR = {"policy": {"kind": "diffusion", "diffusion": {"output_scale": 4}}, "data": {"tasks": ["sr"]}}


def _image(h=64, w=48, seed=0):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def test_default_is_bicubic_4x_downscaling_only():
    x = _image()
    y = sr_degradation(SrConfig())(x, torch.Generator().manual_seed(0))
    assert y.shape == (3, 16, 12)
    assert torch.equal(y, torch.nn.functional.interpolate(x[None], size=(16, 12), mode="bicubic", antialias=True).clamp(0, 1)[0])


def test_blur_comes_before_the_downscaling_and_jpeg_last():
    x = _image()
    blurred = sr_degradation(SrConfig(blur_sigma=(2.0, 2.0)))(x, torch.Generator().manual_seed(0))
    k = 2 * 6 + 1
    expected = downscale(kornia.filters.gaussian_blur2d(x[None], (k, k), (2.0, 2.0), border_type="reflect")[0])
    assert blurred.shape == (3, 16, 12) and torch.allclose(blurred, expected, atol=1e-6)
    noisy = sr_degradation(SrConfig(noise=(20.0, 20.0)))(x, torch.Generator().manual_seed(0))
    assert noisy.shape == (3, 16, 12) and (noisy - downscale(x)).std() == pytest.approx(20 / 255, rel=0.25)  # noise at the small size
    compressed = sr_degradation(SrConfig(noise=(20.0, 20.0), jpeg_quality=(50, 50)))(x, torch.Generator().manual_seed(0))
    assert compressed.shape == (3, 16, 12)
    assert torch.equal(compressed * 255, (compressed * 255).round())  # JPEG is the last step: 8-bit values
    assert not torch.equal(compressed, noisy)


def test_sr_crops_cut_input_and_target_over_one_scene(tmp_path):
    photos = write_photos(tmp_path / "photos", side=72)
    cfg = tiny_config(tmp_path, photos, "http://127.0.0.1:1", **SR)
    item = build_train_dataset(cfg.data)[0]
    assert item["target"].shape == (3, 32, 32) and item["degraded"].shape == (3, 8, 8)
    # the input is the target's scene downscaled (not another window): close to the crop's own downscaling
    aligned = (downscale(item["target"]) - item["degraded"]).abs().mean()
    shifted = (downscale(item["target"].roll(4, dims=-1)) - item["degraded"]).abs().mean()
    assert aligned < 0.03 and aligned < shifted / 2
    full = build_eval_sets(cfg.data)["sr"][0]
    assert full["target"].shape == (3, 64, 64) and full["degraded"].shape == (3, 16, 16)  # 72 px cut to multiples of 32


@pytest.mark.parametrize("sections, fragment", [
    ({"data": {"tasks": ["sr", "denoise"]}}, "cannot share a run with the same-size tasks"),
    ({"data": {"tasks": ["sr"]}}, "policy.kind 'irpo' (AdaIR) restores at its input's size"),
    ({"policy": {"kind": "diffusion"}, "data": {"tasks": ["sr"]}}, "set output_scale 4"),
    ({"policy": {"kind": "diffusion", "diffusion": {"output_scale": 4}}}, "set output_scale 1"),
    ({**SR, "data": {"tasks": ["sr"], "crop_size": 48}}, "must be a multiple of 8: use multiples of 32 px"),
    ({**SR, "data": {"tasks": ["sr"], "source": "adair"}}, "data.source 'adair' has no sr task"),
])
def test_sr_settings_are_checked_at_load(tmp_path, sections, fragment):
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        tiny_config(tmp_path, tmp_path, "http://127.0.0.1:1", **sections)


@pytest.mark.parametrize("kind, scale, fragment", [
    ("x4", 1, "is a 4x super-resolution model"),
    ("ldm_sr", 1, "is a 4x super-resolution model"),
    ("controlnet", 4, "restores at its input's size"),
])
def test_latent_models_refuse_the_other_task_kind(tmp_path, kind, scale, fragment):
    folder = BUILDERS[kind](tmp_path / kind)
    with pytest.raises(ValueError, match=fragment):
        build_diffusion_policy(DiffusionConfig(pretrained=folder, output_scale=scale, sampling_steps=3))


class Upsampler(nn.Module):
    """A stand-in 4x restorer: bicubic upsampling (at_size), so its output equals the upsampled input."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def deterministic(self, x):
        return at_size(x, (x.shape[-2] * 4, x.shape[-1] * 4))


def test_mining_and_evaluation_measure_at_the_output_size(tmp_path):
    photos = write_photos(tmp_path / "photos", side=72)
    cfg = tiny_config(tmp_path, photos, "http://127.0.0.1:1", **SR, eval={"crop": 32})
    records = score_training_set(cfg, Upsampler())
    assert len(records) == 3 and all(r["task"] == "sr" for r in records)
    for r in records:  # the output is the upsampled input: both are measured against the full-size ground truth
        assert r["psnr"] == pytest.approx(r["input_psnr"]) and r["ssim"] == pytest.approx(r["input_ssim"])
    result = evaluate(cfg, Upsampler(), ood=True)
    [row] = result["per_image"]
    item = build_eval_sets(cfg.data, ood=True, crop=32)["sr"][0]
    assert item["degraded"].shape == (3, 8, 8)
    assert (row["psnr"], row["ssim"]) == pytest.approx(psnr_ssim(at_size(item["degraded"], (32, 32)), item["target"]))
    assert row["psnr"] == pytest.approx(row["input_psnr"]) and list(result["columns"]) == ["sr"]


def test_the_demo_grid_shows_the_sr_input_at_the_output_size(tmp_path):
    from trainer.demo.report import image_grid

    photos = write_photos(tmp_path / "photos", side=72)
    cfg = tiny_config(tmp_path, photos, "http://127.0.0.1:1", **SR, eval={"crop": 32})
    assert image_grid(cfg, {"upsampled": Upsampler()}, tmp_path / "grid.png").stat().st_size > 0


@pytest.mark.parametrize("kind", ["controlnet", None])
def test_a_same_size_model_on_the_sr_task_stops_at_preflight(tmp_path, kind):
    """Before any actor or service starts: a ControlNet folder, or the pixel U-Net built from the config."""
    from trainer.preflight import PreflightError, check_policy_and_resume

    folder = None if kind is None else str(BUILDERS[kind](tmp_path / kind))
    cfg = tiny_config(tmp_path, tmp_path, "http://127.0.0.1:1", **SR)
    cfg = cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"diffusion": cfg.policy.diffusion.model_copy(update={"pretrained": folder})})})
    with pytest.raises(PreflightError, match="restores at its input's size; the sr task needs a super-resolution folder"):
        check_policy_and_resume(cfg, "never", 3)


def test_paired_sr_folders_take_inputs_at_a_quarter_of_the_targets_size(tmp_path):
    from PIL import Image

    from trainer.data.sources import DataLayoutError

    gt = (torch.rand(3, 70, 100, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    for split in ("train", "test"):
        for folder, img in (("target", gt), ("input", gt[:, ::4, ::4][:, :17, :25])):  # 70 x 100 -> 17 x 25 (sides // 4)
            (tmp_path / split / "sr" / folder).mkdir(parents=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / split / "sr" / folder / "a.png")
    cfg = tiny_config(tmp_path, tmp_path, "http://127.0.0.1:1", **{**SR, "data": {"tasks": ["sr"], "source": "paired"}})
    item = build_eval_sets(cfg.data)["sr"][0]
    assert item["target"].shape == (3, 64, 96) and item["degraded"].shape == (3, 16, 24)  # cut to 32s around one scene
    assert torch.equal((item["degraded"] * 255).round().to(torch.uint8), (item["target"][:, ::4, ::4] * 255).round().to(torch.uint8))
    Image.fromarray(gt[:, ::2, ::2].permute(1, 2, 0).numpy()).save(tmp_path / "test" / "sr" / "input" / "a.png")  # 2x smaller
    with pytest.raises(DataLayoutError, match="must be the target .* downscaled 4x"):
        build_eval_sets(cfg.data)["sr"][0]


def test_tiled_inference_places_4x_output_windows():
    from trainer.inference import restore

    class Nearest(Upsampler):  # local: a tiled restoration equals the whole one
        def deterministic(self, x):
            return x.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)

    x = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    tiled = restore(Nearest(), x, tile=16, overlap=8)
    assert tiled.shape == (1, 3, 96, 160) and torch.allclose(tiled, Nearest().deterministic(x))


@pytest.mark.parametrize("kind", ["x4", "ldm_sr"])
def test_upscalers_take_the_small_input_itself_as_their_pipelines_do(tmp_path, kind):
    """StableDiffusionUpscalePipeline and LDMSuperResolutionPipeline concatenate the low-resolution image, in [-1, 1],
    with the latent of its size: no resize and no encoding of the input."""
    policy = build_diffusion_policy(DiffusionConfig(pretrained=BUILDERS[kind](tmp_path / kind), output_scale=4, sampling_steps=3))
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(policy._condition(x).concat, x * 2 - 1)
    assert policy.sample(x, 2, torch.Generator().manual_seed(0)).images.shape == (4, 3, 32, 32)
