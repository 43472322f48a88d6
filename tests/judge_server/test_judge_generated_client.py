"""A client generated from the live /openapi.json by openapi-python-client (what the README tells
users to run) generates without a warning, imports module by module, and judges through every main
route (JSON, multipart upload, JSON batch) against a scripted backend; bad input comes back as a
typed Problem."""

from __future__ import annotations

import io

import pytest
from judge_images import b64, image_bytes

from devtools.generated_client import generate_client
from devtools.local_servers import ThreadedServer
from devtools.scripted_backend import FAST, ScriptedBackend
from judge_server.app import create_app
from judge_server.settings import JudgeSettings

TOKEN = "gen-token"
NAMES = ("degraded", "restored", "reference")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    settings = JudgeSettings(model="judge-model", token=TOKEN)
    with ScriptedBackend(logprobs=FAST) as backend, \
            ThreadedServer(create_app(settings.model_copy(update={"backend_url": backend.url}))) as server:
        yield server.url, generate_client(server.url, tmp_path_factory.mktemp("gen"), "irpo_judge_client")


def test_the_client_generates_without_warnings_and_every_module_imports(served):
    _, gen = served
    assert gen.warnings == []
    assert gen.broken == {}
    for name in ("api.default.judge", "api.default.judge_upload", "api.default.judge_batch", "models.problem", "models.error_item"):
        gen.module(name)


def test_the_generated_client_judges_json_upload_and_batches_alike(served):
    url, gen = served
    models, types = gen.module("models"), gen.module("types")
    client = gen.client(url, TOKEN)
    images = {name: image_bytes(seed) for seed, name in enumerate(NAMES)}
    request = models.JudgeRequest(**{n: b64(data) for n, data in images.items()}, task=models.JudgeRequestTaskType0.DENOISE)
    js = gen.module("api.default.judge").sync(client=client, body=request)
    upload = gen.module("api.default.judge_upload").sync(client=client, body=models.JudgeUpload(
        **{n: types.File(io.BytesIO(data), f"{n}.png", "image/png") for n, data in images.items()},
        task=models.JudgeUploadTask.DENOISE, mode=models.JudgeUploadMode.FAST))
    batch = gen.module("api.default.judge_batch").sync(client=client, body=models.BatchRequest(items=[request]))
    assert isinstance(js, models.JudgeResult) and isinstance(upload, models.JudgeResult), (js, upload)
    assert isinstance(batch, models.BatchResult), batch
    assert js.status == models.JudgeResultStatus.OK
    assert js.score == pytest.approx((4 * 0.6 + 3 * 0.3) / 0.9)  # the scripted backend's digit probabilities
    for other in (upload, batch.results[0]):
        assert (other.status, other.score, other.task) == (js.status, js.score, js.task)


def test_bad_input_comes_back_as_a_typed_problem(served):
    url, gen = served
    models, types = gen.module("models"), gen.module("types")
    client = gen.client(url, TOKEN)
    bad = gen.module("api.default.judge_upload").sync_detailed(client=client, body=models.JudgeUpload(
        restored=types.File(io.BytesIO(b"GIF89a not an image"), "out.png", "image/png")))
    detail = gen.problem(bad, 400).detail
    assert isinstance(detail, str) and "restored" in detail

    off_schema = gen.module("api.default.judge_batch").sync_detailed(client=client, body=models.BatchRequest(items=[]))
    [item] = gen.problem(off_schema, 422).detail
    assert isinstance(item, models.ErrorItem) and item.loc == ["items"] and item.type_ == "too_short"  # `type` is reserved

    anonymous = gen.client(url)
    denied = gen.module("api.default.judge").sync_detailed(client=anonymous, body=models.JudgeRequest(restored="x"))
    assert "bearer token" in gen.problem(denied, 401).detail
