"""The human-preference term (HPSv2-style, LRPO's reward) and the face task's absent task term, in process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reward_support import HERE

from reward_server.config import RewardSettings
from reward_server.models import WeightsMissingError, load_models
from reward_server.scorer import Scorer, make_item

TINY = {"clip_model": "tiny-clip", "clip_model_config": HERE / "tiny-clip.json"}
HPS = {"hps_model": "tiny-clip", "hps_model_config": HERE / "tiny-clip.json"}
LRPO = {"hps": 1.0, "clip_iqa": 1.0, "ssim": 1.0, "clip_similarity": 0, "lpips": 0, "aesthetic": 0, "psnr": 0, "judge": 0, "task": 0}


def _images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 48, 48, generator=g), torch.rand(3, 48, 48, generator=g)


def _score(settings: RewardSettings, task: str = "face"):
    restored, reference = _images()
    models = load_models(settings, torch.device("cpu"))
    item = make_item(restored, reference, None, task=task, weights=settings.weights, judge=None, settings=settings)
    return models, Scorer(models, settings).score([item])[0]


def test_hps_is_the_prompt_cosine_mapped_by_its_range_and_says_random():
    st = RewardSettings(**TINY, **HPS, random_weights=True, weights=LRPO, hps_range=(-0.5, 0.5))
    models, res = _score(st)
    h = models.hps
    restored = _images()[0][None]
    x = F.interpolate(restored, size=h.size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    with torch.no_grad():
        emb = h.model.encode_image((x - h.mean) / h.std).float()
        text = h.model.encode_text(__import__("open_clip").get_tokenizer("tiny-clip")([st.hps_prompt])).float()
    by_hand = F.cosine_similarity(emb, text).item()
    assert res.metrics["hps"] == pytest.approx(by_hand, abs=1e-5)
    assert res.terms["hps"] == pytest.approx(by_hand + 0.5, abs=1e-5)  # (x - (-0.5)) / 1
    assert "hps" in res.random_weights and models.provenance["hps"].random
    assert {k for k, v in res.weights.items() if v > 0} == {"hps", "clip_iqa", "ssim"} and sum(res.weights.values()) == pytest.approx(1)
    assert res.skipped["task"].startswith("no task-aware term exists for face")


def test_without_a_model_the_term_is_skipped_and_cannot_be_weighted():
    _, res = _score(RewardSettings(**TINY, random_weights=True))
    assert res.skipped["hps"] == "no human-preference model configured (hps_model)" and "hps" not in res.terms
    assert res.renormalised  # the default task weight had no face term to go to
    with pytest.raises(ValueError, match="weights.hps > 0 needs a human-preference model"):
        RewardSettings(**TINY, weights={"hps": 0.5})


def test_hps_weights_load_from_the_weights_dir(tmp_path: Path):
    st = RewardSettings(**TINY, **HPS, random_weights=True, weights=LRPO, seed=1)
    source, res = _score(st)
    (tmp_path / "hps").mkdir()
    torch.save({"state_dict": source.hps.model.state_dict()}, tmp_path / "hps" / st.hps_file)
    loaded, again = _score(st.model_copy(update={"weights_dir": tmp_path, "seed": 2}))
    assert loaded.provenance["hps"].source == "weights_dir" and "hps" not in again.random_weights
    assert again.metrics["hps"] == pytest.approx(res.metrics["hps"], abs=1e-6)
    torch.save({"visual.proj": torch.zeros(2)}, tmp_path / "hps" / st.hps_file)
    with pytest.raises(WeightsMissingError, match="not an open_clip tiny-clip state dict"):
        load_models(st.model_copy(update={"weights_dir": tmp_path}), torch.device("cpu"))
    with pytest.raises(WeightsMissingError, match="hps: looked in"):
        load_models(st.model_copy(update={"weights_dir": tmp_path / "none", "random_weights": False}), torch.device("cpu"))
