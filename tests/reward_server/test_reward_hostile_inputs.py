"""Inputs of an attacker or an unlucky client (issue 14), over real HTTP: each gets a precise 4xx and
never a 500, a score or an echo of itself; a bad item never fails its batch-mates."""

from __future__ import annotations

import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import reward_images as im
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from safetensors.torch import save

from irpo_common.imaging import encode_base64_png, encode_png
from reward_server.wire import MEDIA_TYPE, WireError, decode_batch, encode_batch

GT = im.photo(0)
GOOD = encode_base64_png(im.hwc(GT))
SMALL = im.photo(3, size=20)  # passes min_side (7), below LPIPS-alex's 31 px


def _refused(resp, status: int, *fragments: str) -> str:
    assert resp.status_code == status, resp.text
    text = json.dumps(resp.json()["detail"])
    for f in fragments:
        assert f in text, text
    return text


def _post_json(http, body: bytes, path: str = "/v1/score"):
    return http.post(path, content=body, headers={"Content-Type": "application/json"})


# --- image sizes follow the configured models -------------------------------------------------

def test_an_image_below_lpips_minimum_is_refused_when_weighted_and_skipped_when_not(http):
    pair = {"restored": encode_base64_png(im.hwc(SMALL)), "reference": encode_base64_png(im.hwc(im.noisy(SMALL, 0.1)))}
    _refused(http.post("/v1/score", json=pair), 400, "LPIPS needs a side of at least 31 px, got 20x20")
    ok = http.post("/v1/score", json={**pair, "weights": {"lpips": 0.0}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["skipped"]["lpips"] == "LPIPS needs a side of at least 31 px, got 20x20" and "psnr" in ok.json()["terms"]


def test_a_small_item_never_fails_concurrent_valid_requests(http):
    valid = {"restored": encode_base64_png(im.hwc(im.noisy(GT, 0.05))), "reference": GOOD, "task": "denoise"}
    small = {"restored": encode_base64_png(im.hwc(SMALL)), "reference": encode_base64_png(im.hwc(SMALL))}
    with ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(lambda p: http.post("/v1/score", json=p), [valid] * 8 + [small]))
    assert [a.status_code for a in answers] == [200] * 8 + [400], [a.text for a in answers]


def test_info_reports_the_minimum_sides_of_the_configured_models(http):
    limits = http.get("/v1/info").json()["limits"]
    assert limits["min_side_by_term"]["lpips"] == 31 and limits["min_side_by_term"]["brisque"] == 32  # configs/reward-cpu.yaml's nr_min_side
    assert limits["min_side_for_weights"] == 31  # the default weights use LPIPS


def test_lpips_minimum_sides_match_the_lpips_package():
    import warnings

    import lpips

    from reward_server.terms import LPIPS_MIN_SIDE

    for net, side in LPIPS_MIN_SIDE.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()  # random backbone: only shapes matter
        with torch.no_grad():
            model(torch.rand(1, 3, side, side + 5), torch.rand(1, 3, side, side + 5), normalize=True)
            with pytest.raises(RuntimeError):
                model(torch.rand(1, 3, side - 1, side + 5), torch.rand(1, 3, side - 1, side + 5), normalize=True)


# --- JSON that breaks naive handlers ------------------------------------------------------------

@pytest.mark.parametrize(
    "body, fragments",
    [
        (json.dumps({"restored": GOOD}).encode("utf-16"), ["byte-order mark"]),
        (json.dumps({"restored": GOOD}).encode("utf-16-le"), ["not UTF-8"]),
        (b'{"restored": "\xff\xfe"}', ["not UTF-8"]),
        (f'{{"restored": "{GOOD}", "judge": NaN}}'.encode(), ["NaN is not a JSON number"]),
        (f'{{"restored": "{GOOD}", "weights": {{"psnr": Infinity}}}}'.encode(), ["Infinity is not a JSON number"]),
        (f'{{"restored": "{GOOD}", "weights": {{"psnr": 1e999}}}}'.encode(), ["out of the float range"]),
        (f'{{"restored": "{GOOD}", "weights": '.encode() + b'{"a": ' * 5000 + b"1" + b"}" * 5001, ["nested deeper"]),
    ],
    ids=["utf16-bom", "utf16", "latin1", "nan-judge", "infinite-weight", "overflowing-weight", "deeply-nested"],
)
def test_unreadable_json_is_400(http, body, fragments):
    _refused(_post_json(http, body), 400, *fragments)


def test_weights_whose_sum_overflows_are_400(http):
    _refused(http.post("/v1/score", json={"restored": GOOD, "weights": {"psnr": 1e308, "ssim": 1e308}}), 400, "overflows")


def test_422_does_not_echo_the_input(http):
    resp = http.post("/v1/score", json={"restored": GOOD, "task": "x" * 200_000, "unknown": "y" * 100_000})
    _refused(resp, 422, "task", "unknown")
    assert len(resp.content) < 2_000


# --- multipart ----------------------------------------------------------------------------------

def _files(img=GT):
    return {"restored": ("out.png", encode_png(im.hwc(img)), "image/png")}


def test_multipart_empty_weights_mean_none_like_other_empty_fields(http):
    plain = http.post("/v1/score", files=_files())
    empty = http.post("/v1/score", files=_files(), data={"weights": "", "task": "", "judge": ""})
    assert plain.status_code == empty.status_code == 200, empty.text
    assert plain.json()["weights"] == empty.json()["weights"]


@pytest.mark.parametrize(
    "weights, fragment",
    [("[" * 100_000 + "]" * 100_000, "nested deeper"), ('{"psnr": 1e999}', "out of the float range"),
     ('{"psnr": NaN}', "NaN is not a JSON number")],
    ids=["deep", "overflow", "nan"],
)
def test_multipart_weights_are_read_strictly(http, weights, fragment):
    _refused(http.post("/v1/score", files=_files(), data={"weights": weights}), 400, "weights", fragment)


def test_multipart_field_given_twice_is_400(http):
    files = [("restored", ("a.png", encode_png(im.hwc(GT)), "image/png")), ("restored", ("b.png", encode_png(im.hwc(GT)), "image/png"))]
    _refused(http.post("/v1/score", files=files), 400, "restored: given more than once")


# --- 16-bit PNG ---------------------------------------------------------------------------------

def _png16(rgb: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow reads it as 8-bit RGB, dropping the low byte)."""
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_16_bit_png_is_refused_not_truncated(http):
    png = _png16(np.full((32, 32, 3), 0x1234, np.uint16))
    _refused(http.post("/v1/score", files={"restored": ("x.png", png, "image/png")}), 400, "restored", "16-bit RGB PNG")


# --- binary batches -----------------------------------------------------------------------------

def _raw_safetensors(header: dict, payload: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


_ENTRY = {"dtype": "F32", "shape": [1, 3, 16, 16], "data_offsets": [0, 3072]}


@pytest.mark.parametrize(
    "body, fragments",
    [
        (lambda: _raw_safetensors({"restored": [1, 2, 3]}, bytes(3072)), ["restored", "not an object"]),
        (lambda: _raw_safetensors({"restored": {**_ENTRY, "shape": [1.0, 3, 16, 16]}}, bytes(3072)), ["positive integers"]),
        (lambda: _raw_safetensors({"restored": {**_ENTRY, "shape": [True, 3, 16, 16]}}, bytes(3072)), ["positive integers"]),
        (lambda: _raw_safetensors({"restored": {**_ENTRY, "shape": [1, 3, "16", 16]}}, bytes(3072)), ["positive integers"]),
        (lambda: _raw_safetensors({"restored": {**_ENTRY, "data_offsets": ["0", 3072]}}, bytes(3072)), ["data_offsets"]),
        (lambda: _raw_safetensors({"restored": _ENTRY, "__metadata__": {"tasks": 1}}, bytes(3072)), ["__metadata__"]),
        (lambda: _raw_safetensors({"restored": _ENTRY, "__metadata__": {"colour": "1"}}, bytes(3072)), ["unknown metadata key", "colour"]),
        (lambda: _raw_safetensors({"restored": _ENTRY, "__metadata__": {"judge": "[" * 5000 + "]" * 5000}}, bytes(3072)), ["nested deeper"]),
        (lambda: _raw_safetensors({"restored": _ENTRY, "__metadata__": {"weights": '{"psnr": 1e999}'}}, bytes(3072)), ["out of the float range"]),
        (lambda: _raw_safetensors({"restored": {**_ENTRY, "data_offsets": [0, 99]}}, bytes(3072)), ["not a valid safetensors file"]),
        (lambda: save({"restored": torch.full((1, 3, 16, 16), 1.5)}), ["items[0].restored", "outside [0, 1]"]),
        (lambda: save({"restored": torch.full((1, 3, 16, 16), 0.5), "reference": torch.full((1, 3, 16, 16), -0.1)}), ["items[0].reference", "outside [0, 1]"]),
    ],
    ids=["entry-not-dict", "float-shape", "bool-shape", "str-shape", "str-offsets", "metadata-not-strings", "unknown-metadata",
         "deep-metadata", "overflowing-weight", "offsets-mismatch", "values-above-1", "values-below-0"],
)
def test_bad_binary_fields_are_400(http, body, fragments):
    resp = http.post("/v1/score/batch", content=body(), headers={"Content-Type": MEDIA_TYPE})
    _refused(resp, 400, *fragments)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_entry = st.fixed_dictionaries({}, optional={"dtype": st.sampled_from(["F32", "F16", "BF16", "I8", 3]) | _json,
                                             "shape": st.lists(st.integers(-2, 40) | _json, max_size=5) | _json,
                                             "data_offsets": st.lists(st.integers(-5, 10_000) | _json, max_size=3) | _json})
_header = st.dictionaries(st.sampled_from(["restored", "reference", "degraded", "__metadata__", "x"]), _entry | _json, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(header=_header, payload=st.binary(max_size=64) | st.just(bytes(3072)))
def test_decode_batch_refuses_any_malformed_header_with_a_wire_error(header, payload):
    """Whatever the header holds, decoding ends in a result or in WireError: never another exception."""
    try:
        decode_batch(_raw_safetensors(header, payload), max_items=8, max_pixels=10_000, max_request_pixels=100_000)
    except WireError:
        pass


def test_binary_batch_round_trips_within_the_limits():
    tensors, options = decode_batch(encode_batch(GT[None], tasks=["denoise"]), max_items=8, max_pixels=10_000, max_request_pixels=100_000)
    assert tensors["restored"].shape == (1, 3, 64, 64) and options[0]["task"] == "denoise"
    with pytest.raises(WireError, match="request budget of 8000"):
        decode_batch(encode_batch(GT[None], GT[None]), max_items=8, max_pixels=10_000, max_request_pixels=8_000)


# --- decoded-pixel budget, from the headers ------------------------------------------------------

def test_pixel_budget_is_checked_from_headers_before_any_decoding(monkeypatch):
    """A few KB of zero-filled 2048x2048 PNGs would decode to 50 MB each: refused before decoding."""
    from irpo_common.imaging import ImageError
    from reward_server import intake as intake_module
    from reward_server.config import RewardSettings
    from reward_server.schemas import ScoreRequest

    def never(*a, **k):
        raise AssertionError("pixels were decoded before the budget check")

    zeros = encode_base64_png(np.zeros((2048, 2048, 3), np.uint8))
    assert len(zeros) < 30_000
    monkeypatch.setattr(intake_module, "load_pixels", never)
    reader = intake_module.Intake(RewardSettings(max_pixels=2048 * 2048, max_request_pixels=2**22))
    reqs = [ScoreRequest(restored=zeros, reference=zeros)]
    with pytest.raises(ImageError, match="hold 8388608 pixels, over the budget of 4194304"):
        reader.json_items(reqs, [""])


def test_openapi_declares_every_body_the_errors_and_the_bearer_scheme(http):
    doc = http.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    paths = ("/v1/score", "/v1/score/upload", "/v1/score/batch", "/v1/score/batch/safetensors")
    ops = {path: doc["paths"][path]["post"] for path in paths}
    # one body media type per operation (generated clients break on two); the JSON routes say what else they take
    assert [list(op["requestBody"]["content"]) for op in ops.values()] == [
        ["application/json"], ["multipart/form-data"], ["application/json"], ["application/octet-stream"]]
    assert "multipart" in ops["/v1/score"]["description"] and MEDIA_TYPE in ops["/v1/score/batch"]["description"]
    for op in ops.values():
        errors = {code: answer for code, answer in op["responses"].items() if code != "200"}
        assert {"400", "401", "408", "413", "415", "422", "503"} == set(errors) and op["security"]
        assert all(a["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"} for a in errors.values())
        assert "retry-after" in {h.lower() for h in op["responses"]["503"]["headers"]}
    assert doc["components"]["schemas"]["ScoreUpload"]["required"] == ["restored"]
    assert doc["components"]["schemas"]["ScoreRequest"]["required"] == ["restored"]
