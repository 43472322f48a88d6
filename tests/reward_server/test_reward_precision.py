"""Reduced precision of the reward networks: bfloat16 agrees with float32 on real photos, 'auto'
follows the hardware, and a precision the device cannot run stops the service at start-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from reward_server import cli
from reward_server import precision as prec
from reward_server.config import load_settings
from reward_server.models import load_models
from reward_server.scorer import Scorer, make_item
from trainer.demo.corpus import SKIMAGE_PHOTOS

CPU = torch.device("cpu")
TOL = 1e-3


def photo_pairs(size: int = 128) -> list[tuple[np.ndarray, np.ndarray]]:
    """(restored, reference) centre crops of scikit-image's bundled photos (the demo corpus), restored
    being the reference with light and with heavy noise left in."""
    rng = np.random.default_rng(0)
    pairs = []
    for name in SKIMAGE_PHOTOS:
        img = getattr(data, name)().astype(np.float32) / 255.0
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        ref = np.ascontiguousarray(img[y:y + size, x:x + size].transpose(2, 0, 1))
        for sigma in (0.02, 0.1):
            pairs.append((np.clip(ref + sigma * rng.standard_normal(ref.shape), 0, 1).astype(np.float32), ref))
    return pairs


def score(precision: str, pairs, **overrides):
    # ViT-B-32 (12 layers, width 768: the benchmarks' CLIP) so that rounding accumulates as in a real tower
    settings = load_settings(None, random_weights=True, clip_model="ViT-B-32", precision=precision, **overrides)
    models = load_models(settings, CPU)
    items = [make_item(torch.from_numpy(r), torch.from_numpy(g), None, task="denoise", weights=settings.weights,
                       judge=None, settings=settings) for r, g in pairs]
    return models, Scorer(models, settings).score(items)


def test_bfloat16_terms_and_reward_match_float32_on_photos():
    pairs = photo_pairs()
    _, full = score("float32", pairs)
    models, half = score("bfloat16", pairs)
    assert models.precision == {"clip": "bfloat16", "lpips_backbone": "bfloat16"}
    assert full[0].precision == {"clip": "float32", "lpips_backbone": "float32"}
    assert half[0].precision == {"clip": "bfloat16", "lpips_backbone": "bfloat16"}
    # the networks really ran in bfloat16: their raw values moved, though within tolerance
    assert any(a.metrics["clip_similarity"] != b.metrics["clip_similarity"] for a, b in zip(full, half))
    assert any(a.metrics["lpips"] != b.metrics["lpips"] for a, b in zip(full, half))
    for a, b in zip(full, half):
        assert b.reward == pytest.approx(a.reward, abs=TOL)
        # CLIP-IQA is the exception (100x logit scale): under 'auto' it keeps CLIP in float32, tested below
        for name in a.terms.keys() - {"clip_iqa"}:
            assert b.terms[name] == pytest.approx(a.terms[name], abs=TOL), name
        assert b.metrics["aesthetic"] == pytest.approx(a.metrics["aesthetic"], abs=TOL)  # the rating (the term clips at 0)
        assert b.metrics["lpips"] == pytest.approx(a.metrics["lpips"], abs=TOL)


def test_auto_follows_native_bfloat16(monkeypatch):
    for amx, avx512_bf16, expected in ((False, False, "float32"), (False, True, "bfloat16"), (True, False, "bfloat16")):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        assert prec.resolve_precision("auto", CPU) == expected
        assert prec.resolve_precision("float32", CPU) == "float32"
    # a weighted CLIP-IQA keeps CLIP in float32 under 'auto', never when bfloat16 is asked for explicitly
    assert prec.network_precisions("auto", CPU, clip_iqa_weighted=True) == {"clip": "float32", "lpips_backbone": "bfloat16"}
    assert prec.network_precisions("bfloat16", CPU, clip_iqa_weighted=True) == {"clip": "bfloat16", "lpips_backbone": "bfloat16"}


def test_precision_the_device_cannot_run_stops_start_up(monkeypatch):
    with pytest.raises(prec.PrecisionError, match="float16 runs on CUDA only"):
        prec.resolve_precision("float16", CPU)
    monkeypatch.setenv("REWARD_SERVER_PRECISION", "float16")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--random-weights", "--device", "cpu", "--port", "0"])
    assert str(exit_.value.code) == (
        "reward-server: cannot start: precision float16 runs on CUDA only; device cpu cannot run it (use bfloat16 or float32)"
    )
    monkeypatch.setenv("REWARD_SERVER_PRECISION", "float64")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--random-weights", "--device", "cpu", "--port", "0"])
    assert "precision" in str(exit_.value.code) and "'auto', 'float32', 'bfloat16' or 'float16'" in str(exit_.value.code)
