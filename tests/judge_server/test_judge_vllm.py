"""End to end against a real vLLM CPU server serving a tiny RANDOM-WEIGHT Qwen2.5-VL.

The model's words mean nothing. Its unembedding is biased towards the digits 1-5 (see
scripts/build_tiny_qwen_vl.py), so the fast mode finds digit probabilities to work with and the
reasoned mode answers digit gibberish without an <Assessment> block. The tests therefore check
shapes, statuses and our handling of real vLLM answers, not judgement quality.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch

from judge_server.client import JudgeClient
from judge_server.completion import Choice
from judge_server.judge import first_token_logprobs, prepare
from judge_server.parsing import expected_digit_score
from judge_server.prompts import chat_body
from judge_server.settings import JudgeSettings

from judge_images import b64, image_bytes, sample_image

pytestmark = pytest.mark.vllm

SETTINGS = dict(reasoned_max_tokens=48, retries=1, backoff_s=0.1)


@pytest.fixture(scope="module")
def judge(vllm, serve_judge):
    with serve_judge(backend_url=vllm.url, model=vllm.served_name, **SETTINGS) as url:
        yield url


def post(url: str, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{path}", timeout=120, **kwargs)


def assert_fast_ok(result: dict, reference_free: bool) -> None:
    assert result["status"] == "ok", result["detail"]
    assert result["mode"] == "fast" and result["reference_free"] is reference_free
    assert 1.0 <= result["score"] <= 5.0
    assert result["reward"] == pytest.approx((result["score"] - 1) / 4)
    assert sorted(result["digit_probs"]) == ["1", "2", "3", "4", "5"]
    assert sum(result["digit_probs"].values()) == pytest.approx(1.0)
    assert 0.5 <= result["digit_mass"] <= 1.0 + 1e-6
    assert len(result["raw_text"]) > 0 and result["latency_s"] > 0
    assert result["model"] == "tiny-qwen2.5-vl"


def test_probes_and_info(judge):
    assert httpx.get(f"{judge}/readyz", timeout=30).json()["status"] == "ready"
    info = httpx.get(f"{judge}/v1/info", timeout=30).json()
    assert info["model"] == "tiny-qwen2.5-vl" and info["reasoned_max_tokens"] == 48


def test_fast_mode_with_three_images(judge, triple):
    answer = post(judge, "/v1/judge", json={**triple, "task": "dehaze"})
    assert answer.status_code == 200
    assert_fast_ok(answer.json(), reference_free=False)


def test_fast_mode_no_reference(judge, triple):
    answer = post(judge, "/v1/judge", json={"restored": triple["restored"]}).json()
    assert_fast_ok(answer, reference_free=True)


def test_reasoned_mode_gibberish_is_unparsed_not_scored(judge, triple):
    answer = post(judge, "/v1/judge", json={**triple, "mode": "reasoned"})
    assert answer.status_code == 200
    result = answer.json()
    assert result["status"] == "unparsed"
    assert result["score"] is None and result["reward"] is None
    assert result["detail"] == "no <Assessment> block in the answer"
    assert len(result["raw_text"]) > 0
    assert result["finish_reason"] == "length"  # ran into reasoned_max_tokens


def test_low_digit_mass_is_reported_without_a_score(vllm, serve_judge, triple):
    with serve_judge(backend_url=vllm.url, model=vllm.served_name, min_digit_mass=1.0) as url:
        result = post(url, "/v1/judge", json=triple).json()
    assert result["status"] == "low_digit_mass"
    assert result["score"] is None and result["reward"] is None
    assert 0.0 < result["digit_mass"] < 1.0
    assert "below the threshold 1.0" in result["detail"]


def test_service_score_matches_the_raw_vllm_logprobs(vllm, serve_judge, triple):
    """Ask vLLM directly with the service's own request body and recompute the expectation."""
    settings = JudgeSettings(backend_url=vllm.url, model=vllm.served_name)
    full = prepare(triple, "fast", None, settings)
    alone = prepare({"restored": triple["restored"]}, "fast", None, settings)
    raw = httpx.post(f"{vllm.url}/chat/completions", json=chat_body(settings, "fast", full.pngs, None), timeout=120).json()
    raw_alone = httpx.post(f"{vllm.url}/chat/completions", json=chat_body(settings, "fast", alone.pngs, None), timeout=120).json()
    choice = raw["choices"][0]
    assert len(choice["logprobs"]["content"]) == 1  # exactly one generated token
    assert len(choice["logprobs"]["content"][0]["top_logprobs"]) == settings.top_logprobs
    expected = expected_digit_score(first_token_logprobs(Choice.model_validate(choice)), settings.min_digit_mass)
    assert expected.score is not None
    # three images cost more prompt tokens than one: the images really reached the model
    assert raw["usage"]["prompt_tokens"] > raw_alone["usage"]["prompt_tokens"]
    with serve_judge(backend_url=vllm.url, model=vllm.served_name) as url:
        served = post(url, "/v1/judge", json=triple).json()
    assert served["score"] == pytest.approx(expected.score, abs=1e-4)
    assert served["digit_mass"] == pytest.approx(expected.mass, abs=1e-4)


def test_multipart_jpeg_upload(judge):
    files = {name: (f"{name}.jpg", image_bytes(seed, "JPEG", size=96), "image/jpeg")
             for seed, name in enumerate(("degraded", "restored", "reference"))}
    answer = post(judge, "/v1/judge", files=files, data={"mode": "fast", "task": "lowlight"})
    assert answer.status_code == 200
    assert_fast_ok(answer.json(), reference_free=False)


def test_client_batches_from_tensors(judge):
    batch = np.stack([sample_image(s).transpose(2, 0, 1) for s in range(5)])
    tensors = torch.from_numpy(batch)
    with JudgeClient(judge) as client:
        assert client.readyz()["status"] == "ready"
        fast = client.judge_batch(tensors, tensors.flip(-1), tensors, tasks=["denoise", None, "derain", "deblur", "dehaze"])
        no_ref = client.judge_batch(None, batch, None)
        reasoned = client.judge_batch(batch[:2], batch[:2], batch[:2], mode="reasoned")
    assert [r.status for r in fast] == ["ok"] * 5
    assert [r.task for r in fast] == ["denoise", None, "derain", "deblur", "dehaze"]
    assert all(r.reference_free for r in no_ref) and all(1 <= r.score <= 5 for r in no_ref)
    assert [(r.status, r.score, r.reward) for r in reasoned] == [("unparsed", None, None)] * 2


def test_a_group_of_candidates_reuses_the_shared_prompt_prefix(vllm, triple):
    """The G candidates of one image share the text, the degraded input and the reference, which come
    first: vLLM's prefix cache serves them to the second candidate, all but its restored image."""
    settings = JudgeSettings(backend_url=vllm.url, model=vllm.served_name)
    candidates = [triple, {**triple, "restored": b64(image_bytes(7))}]
    usage = [httpx.post(f"{vllm.url}/chat/completions", timeout=120,
                        json=chat_body(settings, "fast", prepare(c, "fast", "dehaze", settings).pngs, "dehaze")).json()["usage"]
             for c in candidates]
    alone = prepare({"restored": triple["restored"]}, "fast", None, settings)
    image_tokens = httpx.post(f"{vllm.url}/chat/completions", timeout=120,
                              json=chat_body(settings, "fast", alone.pngs, None)).json()["usage"]["prompt_tokens"]
    cached, total = usage[1]["prompt_tokens_details"]["cached_tokens"], usage[1]["prompt_tokens"]
    print(f"prompt {total} tokens, {cached} served from the prefix cache; a one-image prompt has {image_tokens}")
    assert usage[0]["prompt_tokens"] == total  # same layout, same size
    assert cached > 0 and total - cached < image_tokens  # only the tail (restored image, answer prefix) was computed
