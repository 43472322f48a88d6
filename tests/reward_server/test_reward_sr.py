"""The sr task over real HTTP: a 4x smaller degraded input is scored (upsampled bicubic to the output size for
the terms that compare with it), there is no sr task term (its weight renormalised away, said in the result and in
/v1/info), and every other size mismatch is a precise 4xx."""

from __future__ import annotations

import numpy as np
import pytest
import reward_images as im
import torch
import torch.nn.functional as F

from irpo_common.imaging import encode_base64_png
from reward_server.client import RewardRequestError
from reward_server.metrics import psnr

GT = im.photo(0)  # (3, 64, 64)
RESTORED = im.smoothed(GT, 1.0)


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float()


SMALL = F.interpolate(_chw(GT)[None], size=(16, 16), mode="bicubic", antialias=True).clamp(0, 1)


def test_sr_scores_a_quarter_size_input_without_a_task_term(client):
    [r] = client.score_batch(_chw(RESTORED)[None], _chw(GT)[None], degraded=SMALL, tasks=["sr"])
    assert "task" not in r.terms and r.skipped["task"].startswith("no task-aware term exists for sr")
    assert r.renormalised and "task" not in r.weights and sum(r.weights.values()) == pytest.approx(1.0)
    # the degraded metrics are measured on the input upsampled bicubic to the output size
    up = F.interpolate(SMALL.float(), size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 1)
    assert r.metrics["psnr_degraded"] == pytest.approx(float(psnr(up, _chw(GT)[None])[0]), abs=1e-3)


def test_info_names_the_tasks_without_a_task_term(http):
    info = http.get("/v1/info").json()
    assert "sr" in info["tasks_without_task_term"] and info["input_scale"]["sr"] == 4 and info["input_scale"]["denoise"] == 1


@pytest.mark.parametrize("task, side, fragment", [
    ("sr", 32, "expected 16x16 (or 64x64) for restored 64x64, got 32x32"),  # 2x smaller: not the sr input
    ("denoise", 16, "size 16x16 differs from restored 64x64"),  # a smaller input for a same-size task
    (None, 16, "size 16x16 differs from restored 64x64"),
])
def test_other_size_mismatches_are_a_precise_4xx(client, task, side, fragment):
    small = F.interpolate(_chw(GT)[None], size=(side, side), mode="bicubic", antialias=True).clamp(0, 1)
    with pytest.raises(RewardRequestError) as exc:
        client.score_batch(_chw(RESTORED)[None], _chw(GT)[None], degraded=small, tasks=[task])
    assert exc.value.status == 400 and fragment in str(exc.value)


def test_a_smaller_reference_is_refused_even_for_sr(http):
    body = {"restored": encode_base64_png(im.hwc(RESTORED)),
            "reference": encode_base64_png(im.hwc(im.photo(0, size=16))), "task": "sr"}
    resp = http.post("/v1/score", json=body)
    assert resp.status_code == 400 and "reference: size 16x16 differs from restored 64x64" in resp.text
