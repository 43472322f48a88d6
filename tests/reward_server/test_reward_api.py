"""Endpoints, upload forms, skipping/renormalisation, random-weight reporting and micro-batching."""

from __future__ import annotations

import re
import threading

import httpx
import numpy as np
import pytest
import reward_images as im
import torch

from irpo_common.imaging import encode_base64_png, encode_png
from irpo_common.process import free_port
from reward_server import precision
from reward_server.client import RewardClient, RewardServiceUnavailable

from reward_support import TOKEN

GT = im.photo(11)
RESTORED = im.noisy(GT, 0.05)
RANDOM_TERMS = ["aesthetic", "clip_iqa", "clip_similarity", "lpips"]


def test_probes_and_info(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"ready": True}
    info = http.get("/v1/info").json()
    assert info["device"] in ("cpu", "cuda", "cuda:0")
    assert info["weights"]["gen"] == 0.6 and info["weights"]["psnr"] == 0.2
    assert info["random_weights"] == RANDOM_TERMS
    assert info["models"]["clip"]["random"] is True and "not the paper's ViT-L-14" in info["models"]["clip"]["note"]
    assert info["limits"]["max_pixels"] == 40000  # from the YAML given with --config
    assert info["unavailable_terms"] == {"hps": "no human-preference model configured (hps_model)"}  # a trainer checks it at start
    expected = precision.resolve_precision("auto", torch.device(info["device"]))  # bfloat16 where the device has it natively
    assert info["precision"] == {"clip": expected, "lpips_backbone": expected}


def test_multipart_upload_matches_json(http):
    files = {"restored": ("out.png", encode_png(im.hwc(RESTORED)), "image/png"),
             "reference": ("gt.png", encode_png(im.hwc(GT)), "image/png")}
    form = http.post("/v1/score", files=files, data={"task": "denoise", "judge": "0.5"})
    assert form.status_code == 200, form.text
    js = http.post("/v1/score", json={"restored": encode_base64_png(im.hwc(RESTORED)),
                                      "reference": encode_base64_png(im.hwc(GT)), "task": "denoise", "judge": 0.5})
    assert js.status_code == 200, js.text
    a, b = form.json(), js.json()
    assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
    assert a["metrics"] == pytest.approx(b["metrics"], abs=1e-6)
    assert a["task"] == "denoise" and a["terms"]["judge"] == 0.5


def test_multipart_weights_as_json_text(http):
    files = {"restored": ("out.png", encode_png(im.hwc(RESTORED)), "image/png")}
    r = http.post("/v1/score", files=files, data={"weights": '{"clip_iqa": 1.0, "aesthetic": 0.0}'})
    assert r.status_code == 200, r.text
    assert r.json()["weights"] == {"aesthetic": 0.0, "clip_iqa": 1.0, "brisque": 0.0, "piqe": 0.0}  # 64 px: below NIQE's minimum side
    bad = http.post("/v1/score", files=files, data={"weights": "{psnr"})
    assert bad.status_code == 400 and "weights: not valid JSON" in bad.json()["detail"]


def test_no_reference_scoring_uses_no_reference_terms(http):
    r = http.post("/v1/score", json={"restored": encode_base64_png(im.hwc(RESTORED)), "task": "dehaze"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["terms"]) == {"aesthetic", "clip_iqa", "brisque", "piqe"}
    assert body["skipped"] == {
        "clip_similarity": "no reference given",
        "lpips": "no reference given",
        "psnr": "no reference given",
        "ssim": "no reference given",
        "task": "no reference given (the dehaze term compares with the ground truth)",
        "judge": "no judge score supplied (the judge service is separate; pass `judge` to include it)",
        "niqe": "NIQE needs a side of at least 192 px, got 64x64",
        "hps": "no human-preference model configured (hps_model)",
    }
    assert body["renormalised"] is True
    assert body["weights"] == {"aesthetic": 1.0, "clip_iqa": 0.0, "brisque": 0.0, "piqe": 0.0}  # R_gen keeps its whole share
    assert body["reward"] == pytest.approx(body["terms"]["aesthetic"])
    assert body["random_weights"] == ["aesthetic", "clip_iqa"]
    assert set(body["precision"]) == {"clip"}  # only the networks behind computed terms


def test_per_request_weights_and_degraded_metrics(client):
    [r] = client.score_batch(RESTORED[None], GT[None], degraded=im.noisy(GT, 0.2)[None], tasks=["denoise"],
                             weights={"gen": 0.0, "task": 1.0})
    assert r.weights["task"] == 1.0 and sum(r.weights.values()) == 1.0
    assert r.reward == pytest.approx(r.terms["task"])
    assert r.metrics["psnr_degraded"] < r.metrics["psnr"]
    assert r.random_weights == RANDOM_TERMS


def test_batch_json_endpoint_and_float_precision(http, client):
    # floats between 8-bit levels: the binary path keeps them, so its PSNR differs from the PNG path
    fine = np.clip(GT + 0.5 / 255, 0, 1).astype(np.float32)
    [binary] = client.score_batch(fine[None], GT[None])
    body = http.post("/v1/score/batch", json={"items": [
        {"restored": encode_base64_png(im.hwc(fine)), "reference": encode_base64_png(im.hwc(GT))},
        {"restored": encode_base64_png(im.hwc(fine))},
    ]}).json()
    assert len(body["results"]) == 2 and "psnr" in body["results"][1]["skipped"]
    expected = 10 * np.log10(1 / np.mean((fine.astype(np.float64) - GT) ** 2))
    assert binary.metrics["psnr"] == pytest.approx(expected, abs=1e-3)
    assert abs(body["results"][0]["metrics"]["psnr"] - binary.metrics["psnr"]) > 0.5


def _prom(http, name: str) -> float:
    text = http.get("/metrics").text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def test_batch_request_is_one_device_pass(http, client):
    before_count, before_sum = _prom(http, "reward_batch_size_count"), _prom(http, "reward_batch_size_sum")
    client.score_batch(np.stack([im.noisy(GT, s) for s in np.linspace(0.01, 0.1, 10)]), np.stack([GT] * 10))
    assert _prom(http, "reward_batch_size_sum") - before_sum == 10
    assert _prom(http, "reward_batch_size_count") - before_count == 1


def test_concurrent_requests_are_micro_batched(http, server):
    n = 8
    before_count, before_sum = _prom(http, "reward_batch_size_count"), _prom(http, "reward_batch_size_sum")
    barrier, codes = threading.Barrier(n), []
    payload = {"restored": encode_base64_png(im.hwc(RESTORED)), "reference": encode_base64_png(im.hwc(GT))}

    def one():
        with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
            barrier.wait()
            codes.append(c.post("/v1/score", json=payload).status_code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * n
    assert _prom(http, "reward_batch_size_sum") - before_sum == n
    assert _prom(http, "reward_batch_size_count") - before_count < n  # some requests shared a device pass


def test_metrics_counts_requests(http):
    http.get("/healthz")
    assert re.search(r'^reward_requests_total\{path="/healthz",status="200"\} [1-9]', http.get("/metrics").text, re.M)


def test_client_gives_up_after_retries_on_connection_errors():
    with RewardClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff_s=0.01, timeout_s=2) as c:
        with pytest.raises(RewardServiceUnavailable, match="3 attempts"):
            c.healthz()
