"""Metric values over real HTTP agree with independent evaluations.

Convention (AdaIR's): RGB in [0, 1], skimage PSNR with data_range=1 and SSIM with its defaults
(7x7 uniform window, channel_axis); task terms evaluated directly in numpy from their formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reward_images as im
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from irpo_common.imaging import decode_image, encode_base64_png, encode_png


def _skimage(restored: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    a, b = im.hwc(reference), im.hwc(restored)
    return (
        peak_signal_noise_ratio(a, b, data_range=1.0),
        structural_similarity(a, b, data_range=1.0, channel_axis=2),
    )


def test_psnr_ssim_float_batch_agree_with_skimage(client):
    gt = np.stack([im.photo(s) for s in range(3)])
    restored = np.stack([im.noisy(gt[0], 0.05), im.smoothed(gt[1], 1.5), im.noisy(gt[2], 0.2, seed=7)])
    results = client.score_batch(restored, gt)
    for r, y, g in zip(results, restored, gt):
        p, s = _skimage(y, g)
        assert r.metrics["psnr"] == pytest.approx(p, abs=1e-3)
        assert r.metrics["ssim"] == pytest.approx(s, abs=1e-4)
        # PSNR term: linear in the configured thresholds (20..40 dB), SSIM term: clipped SSIM
        assert r.terms["psnr"] == pytest.approx(min(max((p - 20) / 20, 0), 1), abs=1e-4)
        assert r.terms["ssim"] == pytest.approx(min(max(s, 0), 1), abs=1e-4)


def test_psnr_ssim_png_json_agree_with_skimage(http):
    gt, restored = im.photo(3), im.noisy(im.photo(3), 0.08)
    gt_png, res_png = encode_png(im.hwc(gt)), encode_png(im.hwc(restored))
    r = http.post("/v1/score", json={"restored": encode_base64_png(im.hwc(restored)), "reference": encode_base64_png(im.hwc(gt))})
    assert r.status_code == 200, r.text
    # skimage on exactly what the server decoded (8-bit PNG)
    a, b = decode_image(gt_png, field="gt"), decode_image(res_png, field="res")
    body = r.json()
    assert body["metrics"]["psnr"] == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-3)
    assert body["metrics"]["ssim"] == pytest.approx(structural_similarity(a, b, data_range=1.0, channel_axis=2), abs=1e-4)


def test_identical_images_give_infinite_psnr_and_full_terms(client):
    gt = im.photo(4)[None]
    [r] = client.score_batch(gt, gt)
    assert math.isinf(r.metrics["psnr"]) and r.terms["psnr"] == 1.0
    assert r.metrics["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert r.metrics["lpips"] == pytest.approx(0.0, abs=1e-6)


def test_lpips_zero_for_identity_and_grows_with_noise(client):
    gt = im.photo(5)
    sigmas = [0.0, 0.03, 0.1, 0.3]
    results = client.score_batch(np.stack([im.noisy(gt, s) for s in sigmas]), np.stack([gt] * len(sigmas)))
    d = [r.metrics["lpips"] for r in results]
    assert d[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a < b for a, b in zip(d, d[1:])), d
    assert all(r.terms["lpips"] == pytest.approx(1 - min(x, 1), abs=1e-6) for r, x in zip(results, d))


CASES = {
    # task: (restored, reference) built so the term is far from its maximum
    "denoise": lambda g: (im.smoothed(g, 2.0), g),
    "derain": lambda g: (im.striped(g), g),
    "dehaze": lambda g: (im.hazy(g), g),
    "deblur": lambda g: (im.smoothed(g, 1.5), g),
    "lowlight": lambda g: (im.darkened_tinted(g), g),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_task_term_matches_numpy_formula(client, task):
    gt = im.photo(6)
    degraded_like, ref = CASES[task](gt)
    good = im.noisy(gt, 0.01, seed=3)
    results = client.score_batch(np.stack([degraded_like, good]), np.stack([ref, ref]), tasks=[task, task])
    for r, y in zip(results, (degraded_like, good)):
        assert r.task == task
        assert r.terms["task"] == pytest.approx(im.task_formula(task, y, ref), abs=1e-4)
    # the constructed degradation scores worse than a near-perfect restoration
    assert results[0].terms["task"] < results[1].terms["task"]


def test_derain_prefers_isotropic_over_striped_without_reference(client):
    iso = im.photo(8)
    results = client.score_batch(np.stack([im.striped(iso), iso]), tasks=["derain", "derain"])
    for r, y in zip(results, (im.striped(iso), iso)):
        assert r.terms["task"] == pytest.approx(im.task_formula("derain", y, y), abs=1e-4)
        assert "psnr" in r.skipped
    assert results[0].terms["task"] < results[1].terms["task"]


def test_reward_is_the_weighted_sum_of_terms(client):
    gt = im.photo(9)
    [r] = client.score_batch(im.noisy(gt, 0.05)[None], gt[None], tasks=["denoise"], judge=[0.75])
    # a 64 px photo is below the test server's NIQE minimum side, and it has no human-preference model; both weights are 0
    assert set(r.skipped) == {"niqe", "hps"}
    assert r.renormalised is False
    expected_weights = {"clip_similarity": 0.15, "lpips": 0.15, "aesthetic": 0.09, "psnr": 0.12, "ssim": 0.09,
                        "clip_iqa": 0.0, "brisque": 0.0, "piqe": 0.0, "judge": 0.1, "task": 0.3}
    assert r.weights == pytest.approx(expected_weights)
    assert r.reward == pytest.approx(sum(r.weights[k] * r.terms[k] for k in r.weights))
    assert r.terms["judge"] == 0.75


def test_candidates_sharing_a_reference_score_as_if_sent_alone(client):
    # a GRPO batch: G candidates per reference (the service embeds each distinct reference once)
    gt = [im.photo(s) for s in range(2)]
    restored = np.stack([im.noisy(gt[i // 3], 0.02 + 0.05 * (i % 3), seed=i) for i in range(6)])
    reference = np.stack([gt[i // 3] for i in range(6)])
    together = client.score_batch(restored, reference)
    for i in range(6):
        [alone] = client.score_batch(restored[i : i + 1], reference[i : i + 1])
        for name in ("clip_similarity", "lpips", "psnr", "ssim"):
            assert together[i].metrics[name] == pytest.approx(alone.metrics[name], abs=1e-4), name
