"""A client generated from the live /openapi.json by openapi-python-client (what the README tells
users to run) generates without a warning, imports module by module, and scores through every main
route: JSON, multipart upload, JSON batch, safetensors batch; bad input comes back as a typed Problem."""

from __future__ import annotations

import io

import pytest
import reward_images as im
from reward_support import TOKEN

from devtools.generated_client import generate_client
from irpo_common.imaging import encode_base64_png, encode_png
from reward_server.wire import encode_batch

GT = im.photo(11)
RESTORED = im.noisy(GT, 0.05)


@pytest.fixture(scope="module")
def gen(server, tmp_path_factory):
    return generate_client(server, tmp_path_factory.mktemp("gen"), "irpo_reward_client")


def test_the_client_generates_without_warnings_and_every_module_imports(gen):
    assert gen.warnings == []
    assert gen.broken == {}
    names = {"api.default.score", "api.default.score_upload", "api.default.score_batch", "api.default.score_batch_safetensors",
             "models.problem", "models.error_item"}
    for name in names:
        gen.module(name)


def test_the_generated_client_scores_json_upload_and_batches_alike(gen, server):
    models, types = gen.module("models"), gen.module("types")
    client = gen.client(server, TOKEN)
    restored, reference = encode_png(im.hwc(RESTORED)), encode_png(im.hwc(GT))
    js = gen.module("api.default.score").sync(client=client, body=models.ScoreRequest(
        restored=encode_base64_png(im.hwc(RESTORED)), reference=encode_base64_png(im.hwc(GT)),
        task=models.ScoreRequestTaskType0.DENOISE, judge=0.5))
    assert isinstance(js, models.ItemResult), js
    upload = gen.module("api.default.score_upload").sync(client=client, body=models.ScoreUpload(
        restored=types.File(io.BytesIO(restored), "out.png", "image/png"),
        reference=types.File(io.BytesIO(reference), "gt.png", "image/png"),
        task=models.ScoreUploadTask.DENOISE, judge="0.5"))
    assert isinstance(upload, models.ItemResult), upload
    assert upload.task == js.task == "denoise" and upload.terms["judge"] == 0.5
    assert upload.reward == pytest.approx(js.reward, abs=1e-6)
    assert upload.metrics.to_dict() == pytest.approx(js.metrics.to_dict(), abs=1e-6)
    assert upload.random_weights  # the test server runs on random weights and the typed result says so

    batch = gen.module("api.default.score_batch").sync(client=client, body=models.BatchRequest(items=[
        models.ScoreRequest(restored=encode_base64_png(im.hwc(RESTORED)), reference=encode_base64_png(im.hwc(GT)),
                            task=models.ScoreRequestTaskType0.DENOISE, judge=0.5)]))
    wire = encode_batch(RESTORED[None], GT[None], tasks=["denoise"], judge=[0.5])
    binary = gen.module("api.default.score_batch_safetensors").sync(client=client, body=types.File(io.BytesIO(wire)))
    for result in (batch, binary):
        assert isinstance(result, models.BatchResponse), result
        assert result.results[0].reward == pytest.approx(js.reward, abs=1e-3)  # the wire's floats skip the PNG rounding


def test_bad_input_comes_back_as_a_typed_problem(gen, server):
    models, types = gen.module("models"), gen.module("types")
    client = gen.client(server, TOKEN)
    bad = gen.module("api.default.score_upload").sync_detailed(client=client, body=models.ScoreUpload(
        restored=types.File(io.BytesIO(b"not an image"), "out.png", "image/png")))
    detail = gen.problem(bad, 400).detail
    assert isinstance(detail, str) and "restored" in detail

    off_schema = gen.module("api.default.score").sync_detailed(client=client, body=models.ScoreRequest(
        restored=encode_base64_png(im.hwc(RESTORED)), judge=2.0))
    [item] = gen.problem(off_schema, 422).detail
    assert isinstance(item, models.ErrorItem) and item.loc == ["judge"] and item.type_ == "less_than_equal"  # `type` is reserved: generated as type_

    anonymous = gen.client(server)
    denied = gen.module("api.default.score").sync_detailed(client=anonymous, body=models.ScoreRequest(restored="x"))
    assert "bearer token" in gen.problem(denied, 401).detail
