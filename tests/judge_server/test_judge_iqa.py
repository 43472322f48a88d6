"""The judge's `iqa` mode (Q-Align / DeQA-Score style): one image, the expected quality level over
excellent/good/fair/poor/bad from the first token's logprobs. Values against a scripted backend,
handling and shapes against the real vLLM CPU server (tiny random-weight model)."""

from __future__ import annotations

import math

import httpx
import pytest

from judge_server.client import JudgeClient
from judge_server.completion import Choice
from judge_server.judge import first_token_logprobs, prepare
from judge_server.parsing import LEVELS, expected_level_score
from judge_server.prompts import chat_body
from judge_server.settings import JudgeSettings

from judge_images import b64, image_bytes, sample_image
from devtools.scripted_backend import ScriptedBackend

# " good" and "Good" pool; expected level (4 * 0.5 + 5 * 0.2 + 3 * 0.1) / 0.8, mass 0.8
LEVEL_LOGPROBS = {" good": 0.3, "Good": 0.2, " excellent": 0.2, " fair": 0.1, " The": 0.2}
EXPECTED = (4 * 0.5 + 5 * 0.2 + 3 * 0.1) / 0.8


def test_expected_level_pools_tokens_and_weights_5_to_1():
    r = expected_level_score({t: math.log(p) for t, p in LEVEL_LOGPROBS.items()}, min_mass=0.5)
    assert r.score == pytest.approx(EXPECTED) and r.mass == pytest.approx(0.8)
    assert r.probs == pytest.approx({"bad": 0, "poor": 0, "fair": 0.125, "good": 0.625, "excellent": 0.25})
    assert LEVELS == {"bad": 1, "poor": 2, "fair": 3, "good": 4, "excellent": 5}
    low = expected_level_score({" good": math.log(0.3), "4": math.log(0.6)}, min_mass=0.5)
    assert low.score is None and low.mass == pytest.approx(0.3) and "below the threshold 0.5" in low.error


def test_iqa_single_and_batch_against_the_scripted_backend(serve_judge):
    with ScriptedBackend(logprobs=LEVEL_LOGPROBS) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        one = httpx.post(f"{url}/v1/judge", json={"restored": b64(image_bytes(0)), "mode": "iqa"}, timeout=30).json()
        batch = JudgeClient(url).judge_batch(None, sample_image(0)[None].repeat(2, 0).transpose(0, 3, 1, 2), None, mode="iqa")
        body = backend.bodies[0]
    assert one["status"] == "ok" and one["mode"] == "iqa" and one["reference_free"] is True
    assert one["score"] == pytest.approx(EXPECTED) and one["reward"] == pytest.approx((EXPECTED - 1) / 4)
    assert one["level_mass"] == pytest.approx(0.8) and one["level_probs"]["good"] == pytest.approx(0.625)
    assert one["digit_mass"] is None
    assert [r.score for r in batch] == pytest.approx([EXPECTED, EXPECTED])
    # one image then the question; one token with top logprobs; the answer prefilled up to the word
    content = body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "text"] and "rate the quality" in content[1]["text"]
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 20)
    assert body["messages"][-1] == {"role": "assistant", "content": "The quality of the image is"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_iqa_low_level_mass_has_an_explicit_status_and_no_number(serve_judge):
    with ScriptedBackend(logprobs={"4": 0.9, " good": 0.05}) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        r = httpx.post(f"{url}/v1/judge", json={"restored": b64(image_bytes(0)), "mode": "iqa"}, timeout=30).json()
    assert r["status"] == "low_level_mass" and r["score"] is None and r["reward"] is None
    assert r["level_mass"] == pytest.approx(0.05) and "excellent/good/fair/poor/bad" in r["detail"]


def test_iqa_refuses_extra_images(serve_judge, triple):
    with ScriptedBackend(logprobs=LEVEL_LOGPROBS) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        r = httpx.post(f"{url}/v1/judge", json={**triple, "mode": "iqa"}, timeout=30)
        assert not backend.bodies
    assert r.status_code == 422 and "iqa mode rates `restored` alone" in r.json()["detail"]


@pytest.mark.vllm
def test_iqa_against_real_vllm(vllm, serve_judge):
    """vLLM accepts the prefilled assistant turn and returns one token with 20 top logprobs; the
    service's expectation and mass equal those recomputed from vLLM's raw answer. The random tiny
    model rarely puts mass on the quality words, so both statuses are legitimate here."""
    settings = JudgeSettings(backend_url=vllm.url, model=vllm.served_name, min_level_mass=0.0)
    item = prepare({"restored": b64(image_bytes(0))}, "iqa", None, settings)
    raw = httpx.post(f"{vllm.url}/chat/completions", json=chat_body(settings, "iqa", item.pngs, None), timeout=120)
    assert raw.status_code == 200, raw.text
    choice = raw.json()["choices"][0]
    assert len(choice["logprobs"]["content"]) == 1 and len(choice["logprobs"]["content"][0]["top_logprobs"]) == 20
    expected = expected_level_score(first_token_logprobs(Choice.model_validate(choice)), 0.0)
    with serve_judge(backend_url=vllm.url, model=vllm.served_name, min_level_mass=0.0) as url:
        one = httpx.post(f"{url}/v1/judge", json={"restored": b64(image_bytes(0)), "mode": "iqa"}, timeout=120).json()
        batch = httpx.post(f"{url}/v1/judge/batch", json={"items": [{"restored": b64(image_bytes(s)), "mode": "iqa"} for s in range(3)]},
                           timeout=120).json()["results"]
    assert one["status"] == ("ok" if expected.score is not None else "low_level_mass")
    assert one["level_mass"] == pytest.approx(expected.mass, abs=1e-4)
    if expected.score is not None:
        assert one["score"] == pytest.approx(expected.score, abs=1e-4) and sorted(one["level_probs"]) == sorted(LEVELS)
    assert len(batch) == 3 and all(r["mode"] == "iqa" and r["status"] in ("ok", "low_level_mass") for r in batch)
    assert all((r["score"] is None) == (r["status"] != "ok") for r in batch)
