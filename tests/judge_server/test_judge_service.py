"""The judge service over real HTTP on loopback, against scripted OpenAI-compatible backends.

These cover what a real model cannot be made to do on demand: failures, retries, malformed
answers, outages. The real-vLLM end-to-end tests are in test_judge_vllm.py.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from irpo_common.imaging import decode_base64_image
from irpo_common.process import free_port
from judge_server.client import JudgeClient, JudgeRequestError, JudgeUnavailable

from judge_images import b64, image_bytes
from devtools.scripted_backend import FAST, ScriptedBackend




def test_fast_mode_request_shape_and_expected_score(serve_judge, triple):
    with ScriptedBackend(logprobs=FAST) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        answer = httpx.post(f"{url}/v1/judge", json={**triple, "task": "denoise"}, timeout=30).json()
        body = backend.bodies[0]
    assert answer["status"] == "ok"
    assert answer["score"] == pytest.approx((4 * 0.6 + 3 * 0.3) / 0.9)
    assert answer["reward"] == pytest.approx((answer["score"] - 1) / 4)
    assert answer["digit_mass"] == pytest.approx(0.9)
    # what went to the backend: the prompt then 3 images, the candidate last (what a group shares comes first,
    # for vLLM's prefix cache), one token with top logprobs, answer prefilled
    content = body["messages"][0]["content"]
    assert [part["type"] for part in content] == ["text"] + ["image_url"] * 3
    assert "known to be degraded by noise" in content[0]["text"]
    sent = [decode_base64_image(part["image_url"]["url"], field="sent") for part in content[1:]]
    for got, name in zip(sent, ("degraded", "reference", "restored")):
        assert np.array_equal(got, decode_base64_image(triple[name], field=name)), name
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 20)
    assert body["messages"][-1] == {"role": "assistant", "content": "<Score>"} and body["continue_final_message"]


def test_reasoned_mode_parses_the_assessment(serve_judge, triple):
    text = "<Assessment><DegradationType>blur</DegradationType><Analysis>Sharper.</Analysis><Score>5</Score></Assessment>"
    with ScriptedBackend(content=text) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        answer = httpx.post(f"{url}/v1/judge", json={**triple, "mode": "reasoned"}, timeout=30).json()
        assert backend.bodies[0]["max_tokens"] == 512 and "logprobs" not in backend.bodies[0]
    assert (answer["status"], answer["score"], answer["reward"]) == ("ok", 5, 1.0)
    assert (answer["degradation_type"], answer["degradation_task"], answer["analysis"]) == ("blur", "deblur", "Sharper.")


def test_unparsable_answer_has_explicit_status_and_no_score(serve_judge, triple):
    with ScriptedBackend(content="<Assessment><Score>7</Score></Assessment>") as backend, \
            serve_judge(backend_url=backend.url, model="judge-model") as url:
        answer = httpx.post(f"{url}/v1/judge", json={**triple, "mode": "reasoned"}, timeout=30).json()
    assert answer["status"] == "unparsed"
    assert answer["score"] is None and answer["reward"] is None
    assert "'7' is not an integer from 1 to 5" in answer["detail"]


def test_transient_backend_errors_are_retried(serve_judge, triple):
    with ScriptedBackend(failures=[503, 500], logprobs=FAST) as backend, \
            serve_judge(backend_url=backend.url, model="judge-model", retries=2, backoff_s=0.01) as url:
        answer = httpx.post(f"{url}/v1/judge", json=triple, timeout=30)
        assert len(backend.bodies) == 3
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


def test_persistent_backend_errors_give_503_with_the_reason(serve_judge, triple):
    with ScriptedBackend(failures=[503] * 3) as backend, \
            serve_judge(backend_url=backend.url, model="judge-model", retries=2, backoff_s=0.01) as url:
        answer = httpx.post(f"{url}/v1/judge", json=triple, timeout=30)
        assert len(backend.bodies) == 3
    assert answer.status_code == 503
    assert "unavailable after 3 attempt(s)" in answer.json()["detail"] and "503" in answer.json()["detail"]


def test_backend_refusal_and_missing_logprobs_are_502(serve_judge, triple):
    with ScriptedBackend(failures=[400]) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        refused = httpx.post(f"{url}/v1/judge", json=triple, timeout=30)
        assert len(backend.bodies) == 1  # a 400 is not retried
        no_logprobs = httpx.post(f"{url}/v1/judge", json=triple, timeout=30)
    assert refused.status_code == 502 and "rejected the request with 400" in refused.json()["detail"]
    assert no_logprobs.status_code == 502 and "without the logprobs" in no_logprobs.json()["detail"]


def test_client_retries_a_502_then_reports_an_outage_not_a_request_error(serve_judge):
    # 502 is the service's word for a malformed backend answer: a server-side fault the trainer's
    # judge.on_outage policy handles, unlike a 4xx refusal of our own request
    with ScriptedBackend(failures=[400] * 3) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        with JudgeClient(url, retries=2) as client:
            with pytest.raises(JudgeUnavailable, match="no answer after 3 attempt.*502"):
                client.judge_batch(None, np.zeros((1, 3, 32, 32), np.float32), None)
        assert len(backend.bodies) == 3
        with JudgeClient(url, retries=2) as client:
            with pytest.raises(JudgeRequestError, match="422"):
                client.judge_batch(None, np.zeros((1, 3, 32, 32), np.float32), None, mode="no-such-mode")


def test_backend_down_gives_503_and_the_client_raises_unavailable(serve_judge, triple):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with serve_judge(backend_url=dead, retries=1, backoff_s=0.01) as url:
        answer = httpx.post(f"{url}/v1/judge", json=triple, timeout=30)
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert httpx.get(f"{url}/healthz", timeout=30).json() == {"status": "ok"}
        with JudgeClient(url, retries=0) as client:
            with pytest.raises(JudgeUnavailable, match="cannot reach"):
                client.judge_batch(None, np.zeros((1, 3, 32, 32), np.float32), None)
    assert answer.status_code == 503 and "cannot reach" in answer.json()["detail"]
    assert ready.status_code == 503


def test_unreachable_service_raises_unavailable_after_retries():
    with JudgeClient(f"http://127.0.0.1:{free_port()}", retries=1) as client:
        with pytest.raises(JudgeUnavailable, match="no answer after 2 attempt"):
            client.healthz()


def test_readyz_checks_the_configured_model(serve_judge):
    with ScriptedBackend() as backend:
        with serve_judge(backend_url=backend.url, model="judge-model") as url:
            assert httpx.get(f"{url}/readyz", timeout=30).json()["status"] == "ready"
        with serve_judge(backend_url=backend.url, model="other-model") as url:
            answer = httpx.get(f"{url}/readyz", timeout=30)
    assert answer.status_code == 503 and "not the configured model 'other-model'" in answer.json()["detail"]


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"restored": "not base64!"}, 400, "restored: not valid base64"),
        ({"reference": b64(b"GIF89a not an image")}, 400, "reference: not a decodable PNG or JPEG image"),
        ({"degraded": None}, 422, "degraded: required"),
        ({"mode": "reasoned", "degraded": None, "reference": None}, 422, "degraded, reference: required in reasoned mode"),
        ({"task": "sharpen"}, 422, "task"),
        ({"mode": "slow"}, 422, "mode"),
        ({"extra": 1}, 422, "extra"),
    ],
)
def test_bad_requests_are_4xx_with_a_precise_message(serve_judge, triple, change, status, message):
    with ScriptedBackend(logprobs=FAST) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        answer = httpx.post(f"{url}/v1/judge", json={**triple, **change}, timeout=30)
        assert backend.bodies == []  # refused before any backend call
    assert answer.status_code == status
    assert message in str(answer.json()["detail"])


def test_bad_image_in_a_batch_names_the_item(serve_judge, triple):
    with ScriptedBackend(logprobs=FAST) as backend, serve_judge(backend_url=backend.url, model="judge-model", max_batch=3) as url:
        bad = httpx.post(f"{url}/v1/judge/batch", json={"items": [triple, {**triple, "restored": "AAAA"}]}, timeout=30)
        too_many = httpx.post(f"{url}/v1/judge/batch", json={"items": [triple] * 4}, timeout=30)
        not_json = httpx.post(f"{url}/v1/judge/batch", content=b"{", headers={"content-type": "application/json"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["detail"].startswith("items[1].restored:")
    assert too_many.status_code == 413
    assert not_json.status_code == 400


def test_oversized_image_is_refused(serve_judge):
    big = b64(image_bytes(0, size=100))
    with serve_judge(max_image_pixels=64 * 64) as url:
        answer = httpx.post(f"{url}/v1/judge", json={"restored": big}, timeout=30)
    assert answer.status_code == 400 and "exceeds the limit of 4096" in answer.json()["detail"]


def test_body_over_the_limit_is_413_before_the_backend_is_asked(serve_judge, triple):
    with ScriptedBackend(logprobs=FAST) as backend, \
            serve_judge(backend_url=backend.url, model="judge-model", max_body_bytes=1000) as url:
        answer = httpx.post(f"{url}/v1/judge", json=triple, timeout=30)
        assert answer.status_code == 413 and "exceeds the limit of 1000" in answer.json()["detail"]
        assert backend.bodies == []


def test_bearer_token_guards_the_v1_routes(serve_judge, triple):
    with ScriptedBackend(logprobs=FAST) as backend, \
            serve_judge(backend_url=backend.url, model="judge-model", token="s3cret") as url:
        assert httpx.post(f"{url}/v1/judge", json=triple, timeout=30).status_code == 401
        for wrong in ("Bearer nope", "Bearer", "s3cret", "Basic s3cret"):  # "Bearer" alone: an empty credential
            assert httpx.get(f"{url}/v1/info", headers={"Authorization": wrong}, timeout=30).status_code == 401, wrong
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        with JudgeClient(url, token="s3cret") as client:
            assert client.info()["auth"] is True
        with JudgeClient(url, token="nope") as client, pytest.raises(JudgeRequestError, match="401"):
            client.info()


def test_multipart_upload_and_the_cache(serve_judge):
    files = {name: (f"{name}.jpg", image_bytes(seed, "JPEG"), "image/jpeg")
             for seed, name in enumerate(("degraded", "restored", "reference"))}
    with ScriptedBackend(logprobs=FAST) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        first = httpx.post(f"{url}/v1/judge", files=files, data={"task": "deblur"}, timeout=30).json()
        second = httpx.post(f"{url}/v1/judge", files=files, data={"task": "deblur"}, timeout=30).json()
        other_task = httpx.post(f"{url}/v1/judge", files=files, data={"task": "derain"}, timeout=30).json()
        bad = httpx.post(f"{url}/v1/judge", files={"restored": ("r.png", b"\x89PNG broken", "image/png")}, timeout=30)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert len(backend.bodies) == 2
    assert first["status"] == "ok" and not first["cached"] and first["task"] == "deblur"
    assert second["cached"] and second["score"] == first["score"]
    assert not other_task["cached"]
    assert bad.status_code == 400 and "restored:" in bad.json()["detail"]
    assert "judge_cache_hits_total 1.0" in metrics
    assert 'judge_items_total{mode="fast",status="ok"} 2.0' in metrics
    # the shared request counter labels by route template and status code
    assert 'judge_http_requests_total{code="200",route="/v1/judge"} 3.0' in metrics
    assert 'judge_http_requests_total{code="400",route="/v1/judge"} 1.0' in metrics


def test_client_checks_shapes_before_sending():
    with JudgeClient(f"http://127.0.0.1:{free_port()}", retries=0) as client:
        good = np.zeros((2, 3, 16, 16), np.float32)
        with pytest.raises(ValueError, match=r"restored: expected shape \(N, 3, H, W\)"):
            client.judge_batch(None, np.zeros((2, 16, 16, 3), np.float32), None)
        with pytest.raises(ValueError, match="reference: 1 images for 2 restored"):
            client.judge_batch(good, good, good[:1])
        with pytest.raises(ValueError, match="tasks: 1 entries"):
            client.judge_batch(good, good, good, tasks=["denoise"])
        with pytest.raises(ValueError, match="NaN"):
            client.judge_batch(None, np.full((1, 3, 4, 4), np.nan, np.float32), None)


def test_client_surfaces_refusals_as_request_errors(serve_judge):
    img = np.zeros((1, 3, 32, 32), np.float32)
    with serve_judge() as url, JudgeClient(url, retries=0) as client:
        with pytest.raises(JudgeRequestError, match="422.*reference: required"):
            client.judge_batch(img, img, None)
