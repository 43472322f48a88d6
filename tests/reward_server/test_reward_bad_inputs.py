"""Every kind of bad input gets a precise 4xx over real HTTP, never a 500 and never a score."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
import reward_images as im
from PIL import Image

from irpo_common.imaging import encode_base64_png
from reward_server.client import RewardClient, RewardRequestError
from reward_server.wire import MEDIA_TYPE, encode_batch

from reward_support import LIMITS, TOKEN

GT = im.photo(0)
GOOD = encode_base64_png(im.hwc(GT))


def _png(mode: str, size=(32, 32)) -> str:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _assert_refused(resp, status: int, *fragments: str):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert "reward" not in body
    text = json.dumps(body["detail"])
    for f in fragments:
        assert f in text, text


@pytest.mark.parametrize(
    "payload, fragments",
    [
        ({"restored": base64.b64encode(b"definitely not an image").decode()}, ["restored", "not a decodable PNG or JPEG"]),
        ({"restored": "%%% not base64 %%%"}, ["restored", "not valid base64"]),
        ({"restored": GOOD, "reference": encode_base64_png(im.hwc(im.photo(0, size=48)))}, ["reference", "differs from restored"]),
        ({"restored": GOOD, "degraded": encode_base64_png(im.hwc(im.photo(0, size=40)))}, ["degraded", "differs from restored"]),
        ({"restored": _png("L")}, ["restored", "1 channel(s)", "RGB"]),
        ({"restored": _png("RGBA")}, ["restored", "4 channel(s)"]),
        ({"restored": _png("RGB", (4, 64))}, ["restored", "smaller than the minimum side"]),
        ({"restored": _png("RGB", (300, 300))}, ["restored", "exceeds the limit of 40000"]),
        ({"restored": GOOD, "weights": {"sharpness": 1.0}}, ["weights", "sharpness"]),
        ({"restored": GOOD, "weights": {"psnr": -1.0}}, ["weights", "psnr"]),
        ({"restored": GOOD, "weights": {"aesthetic": 0.0, "clip_iqa": 0.0}}, ["no computed term has a positive weight"]),
        ({"restored": GOOD, "weights": {"hps": 1.0}}, ["weights", "hps > 0 but no human-preference model configured"]),
    ],
    ids=["undecodable", "bad-base64", "reference-size", "degraded-size", "grayscale", "rgba", "too-small",
         "too-many-pixels", "unknown-weight", "negative-weight", "nothing-weighted", "hps-without-model"],
)
def test_bad_json_image_is_400(http, payload, fragments):
    _assert_refused(http.post("/v1/score", json=payload), 400, *fragments)


def _png_header_only(width: int, height: int) -> str:
    """A PNG whose header claims a huge RGB image (a decompression bomb) with no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


@pytest.mark.parametrize("side", [1000, 50_000])  # over our limit; also over PIL's own bomb guard
def test_decompression_bomb_is_400(http, side):
    resp = http.post("/v1/score", json={"restored": _png_header_only(side, side)})
    _assert_refused(resp, 400, "restored", "exceeds the limit of 40000")


def test_unknown_task_is_422(http):
    _assert_refused(http.post("/v1/score", json={"restored": GOOD, "task": "sharpen"}), 422, "task", "denoise")


def test_missing_restored_and_extra_fields_are_422(http):
    _assert_refused(http.post("/v1/score", json={"reference": GOOD}), 422, "restored", "missing")
    _assert_refused(http.post("/v1/score", json={"restored": GOOD, "colour": 1}), 422, "colour")


def test_judge_out_of_range_is_422(http):
    _assert_refused(http.post("/v1/score", json={"restored": GOOD, "judge": 4}), 422, "judge")


def test_not_json_is_400(http):  # as the judge service: unreadable JSON is 400, a schema mismatch 422
    resp = http.post("/v1/score", content=b"{not json", headers={"Content-Type": "application/json"})
    _assert_refused(resp, 400, "not valid JSON")


def test_unsupported_content_type_is_415(http):
    resp = http.post("/v1/score", content=b"x", headers={"Content-Type": "text/plain; x=" + "y" * 1000})
    _assert_refused(resp, 415, "application/json")
    assert "text/plain" not in resp.text  # the header is not echoed
    # the routes that document one other body take only that one
    _assert_refused(http.post("/v1/score/upload", json={"restored": GOOD}), 415, "send multipart/form-data")
    _assert_refused(http.post("/v1/score/batch/safetensors", json={"items": [{"restored": GOOD}]}), 415, "send application/vnd.safetensors")


def test_body_over_limit_is_413(http):
    big = "A" * (LIMITS["max_body_bytes"] + 10)
    _assert_refused(http.post("/v1/score", json={"restored": big}), 413, "exceeds the limit")


def test_chunked_body_over_limit_is_413(http):
    chunk = b"A" * 100_000

    def body():  # no Content-Length: the limit must act while streaming
        for _ in range(LIMITS["max_body_bytes"] // len(chunk) + 2):
            yield chunk

    resp = http.post("/v1/score/batch", content=body(), headers={"Content-Type": MEDIA_TYPE})
    _assert_refused(resp, 413, "exceeds the limit")


def _binary(resp_kwargs_tensors, **meta) -> bytes:
    return encode_batch(*resp_kwargs_tensors, **meta)


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda: _binary([np.where(np.arange(GT.size).reshape(GT.shape) == 5, np.nan, GT)[None]]), ["restored", "NaN or infinite", "[0]"]),
        (lambda: _binary([GT[None], np.stack([GT, np.full_like(GT, np.inf)])[1:]]), ["reference", "NaN or infinite"]),
        (lambda: _binary([GT[None], im.photo(0, size=48)[None]]), ["reference", "differs from restored"]),
        (lambda: _binary([np.stack([GT, GT])], tasks=["denoise"]), ["tasks", "2 entries"]),
        (lambda: _binary([GT[None]], tasks=["sharpen"]), ["items[0]", "task"]),
        (lambda: _binary([GT[None]], judge=[2.0]), ["items[0]", "judge"]),
        (lambda: _binary([GT[None]], weights={"nope": 1.0}), ["items[0]", "nope"]),
        (lambda: _binary([np.zeros((1, 3, 250, 250), np.float32)]), ["exceeds the limit of 40000"]),
        (lambda: _binary([np.zeros((40, 3, 8, 8), np.float32)]), ["batch of 40 items"]),
        (lambda: b"\x05\x00\x00\x00\x00\x00\x00\x00{abc}", ["safetensors header: not valid JSON"]),
        (lambda: b"\xff" * 4, ["not a safetensors file"]),
    ],
    ids=["nan", "inf-reference", "shape-mismatch", "metadata-length", "unknown-task", "judge-range", "unknown-weight",
         "too-many-pixels", "too-many-items", "bad-header", "truncated"],
)
def test_bad_binary_batch_is_400(http, make, fragments):
    resp = http.post("/v1/score/batch", content=make(), headers={"Content-Type": MEDIA_TYPE})
    _assert_refused(resp, 400, *fragments)


def test_binary_wrong_channel_count_and_dtype(http):
    from safetensors.torch import save
    import torch

    two = save({"restored": torch.zeros(1, 2, 16, 16)})
    _assert_refused(http.post("/v1/score/batch", content=two, headers={"Content-Type": MEDIA_TYPE}), 400, "(N, 3, H, W)")
    ints = save({"restored": torch.zeros(1, 3, 16, 16, dtype=torch.int32)})
    _assert_refused(http.post("/v1/score/batch", content=ints, headers={"Content-Type": MEDIA_TYPE}), 400, "dtype I32")


def test_json_batch_errors_name_the_item(http):
    items = [{"restored": GOOD}, {"restored": GOOD, "reference": _png("RGB", (20, 20))}]
    _assert_refused(http.post("/v1/score/batch", json={"items": items}), 400, "items[1].reference", "differs")


def test_auth_required_on_v1_only(server):
    import httpx

    with httpx.Client(base_url=server, timeout=30) as anon:
        _assert_refused(anon.post("/v1/score", json={"restored": GOOD}), 401, "bearer token")
        wrong = anon.get("/v1/info", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert anon.get("/healthz").status_code == 200  # probes stay open


def test_client_raises_request_error_on_4xx_without_retrying(server):
    with RewardClient(server, token=TOKEN, retries=3, backoff_s=30.0) as c:
        with pytest.raises(RewardRequestError) as err:  # 30 s backoff would make a retry obvious
            c.score_batch(np.full((1, 3, 16, 16), np.nan, np.float32))
    assert err.value.status == 400 and "NaN" in str(err.value.detail)
