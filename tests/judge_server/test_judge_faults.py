"""A misbehaving backend and hostile requests: slow or malformed answers, odd image sizes, deep
JSON. Each ends in a precise 4xx or 5xx with its reason, never a 500 and never a made-up score."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from devtools.scripted_backend import FAST, ScriptedBackend
from judge_images import b64, image_bytes
from judge_server.client import JudgeClient, JudgeUnavailable


def test_a_dripping_backend_is_cut_by_the_call_timeout_and_the_request_deadline(serve_judge, triple):
    # every read is quick (a byte per 50 ms) but the answer would take ~30 s: a per-read timeout never fires
    with ScriptedBackend(logprobs=FAST, drip_s=0.05) as backend, serve_judge(
        backend_url=backend.url, model="judge-model", timeout_s=0.5, request_timeout_s=2.0, retries=5, backoff_s=0.01
    ) as url:
        answer = httpx.post(f"{url}/v1/judge", json=triple, timeout=60)
        calls = len(backend.bodies)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert answer.status_code == 504
    detail = answer.json()["detail"]
    assert "no answer within the request deadline of 2 s" in detail
    assert "no complete answer within timeout_s = 0.5 s" in detail
    assert 2 <= calls <= 6  # the deadline, not the retries, ended it
    assert 'judge_backend_failures_total{kind="timeout"} 1.0' in metrics


def test_a_client_that_leaves_has_its_backend_call_cancelled(serve_judge, triple):
    """The backend would answer in ~30 s and the service would wait 30 s for it; the client leaves after
    0.5 s: the service hangs up on the backend at once (vLLM then aborts the generation) and counts a 499."""
    with ScriptedBackend(logprobs=FAST, drip_s=0.05) as backend, serve_judge(
        backend_url=backend.url, model="judge-model", timeout_s=30, request_timeout_s=60, retries=0
    ) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/judge", json=triple, timeout=0.5)
        deadline = time.monotonic() + 10  # a bound against a hang, far below the backend's 30 s
        counted = 'judge_http_requests_total{code="499",route="/v1/judge"} 1.0'
        while (backend.cut < 1 or counted not in httpx.get(f"{url}/metrics").text) and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = httpx.get(f"{url}/metrics").text
    assert backend.cut == 1 and len(backend.bodies) == 1
    assert counted in metrics, [line for line in metrics.splitlines() if line.startswith("judge_http")]


def test_the_client_does_not_resend_what_the_service_already_retried(serve_judge):
    img = np.zeros((1, 3, 32, 32), np.float32)
    with ScriptedBackend(logprobs=FAST, drip_s=0.05) as backend, serve_judge(
        backend_url=backend.url, model="judge-model", timeout_s=0.3, retries=1, backoff_s=0.01
    ) as url:
        with JudgeClient(url, retries=3) as client, pytest.raises(JudgeUnavailable, match="503.*after 2 attempt.*timeout_s = 0.3 s"):
            client.judge_batch(None, img, None)
        assert len(backend.bodies) == 2  # the service's 1 + 1 backend calls, none resent by the client


def test_a_client_timeout_is_reported_with_its_reason_and_not_resent(serve_judge):
    img = np.zeros((1, 3, 32, 32), np.float32)
    with ScriptedBackend(logprobs=FAST, drip_s=0.05) as backend, serve_judge(
        backend_url=backend.url, model="judge-model", timeout_s=1.0, retries=0
    ) as url:
        with JudgeClient(url, timeout_s=0.5, retries=3) as client:  # gives up before the service
            with pytest.raises(JudgeUnavailable, match=r"no answer within timeout_s = 0.5 s \(ReadTimeout\).*request_timeout_s"):
                client.judge_batch(None, img, None)
        assert len(backend.bodies) == 1


def _logprob_choice(first: dict, top: list[dict]) -> dict:
    return {"message": {"content": "4"}, "finish_reason": "length",
            "logprobs": {"content": [{**first, "top_logprobs": top}]}}


_FOUR = {"token": "4", "logprob": -0.1}
MALFORMED = {
    "content not a string": ({"message": {"content": 5}, "finish_reason": "stop"}, "reasoned", "choices.0.message.content"),
    "content a list": ({"message": {"content": ["<Score>5</Score>"]}}, "reasoned", "choices.0.message.content"),
    "finish_reason an int": ({"message": {"content": "x"}, "finish_reason": 1}, "reasoned", "choices.0.finish_reason"),
    "no message": ({"finish_reason": "stop"}, "reasoned", "choices.0.message"),
    "token an int": (_logprob_choice({"token": 4, "logprob": -0.1}, [_FOUR]), "fast", "logprobs.content.0.token"),
    "top token an int": (_logprob_choice(_FOUR, [{"token": 4, "logprob": -0.1}]), "fast", "top_logprobs.0.token"),
    "logprob a string": (_logprob_choice(_FOUR, [{"token": "4", "logprob": "-0.1"}]), "fast", "top_logprobs.0.logprob"),
    "logprob 1000": (_logprob_choice(_FOUR, [{"token": "4", "logprob": 1000.0}]), "fast", "is not a log-probability"),
    "positive logprob": (_logprob_choice({"token": "4", "logprob": 0.5}, [_FOUR]), "iqa", "is not a log-probability"),
    "probabilities over 1": (
        _logprob_choice(_FOUR, [{"token": t, "logprob": -1e-5} for t in "12345"] + [{"token": f"t{i}", "logprob": 0.0} for i in range(16)]),
        "fast", "add up to a probability of 21",
    ),
    "logprobs content not a list": ({"message": {"content": "4"}, "logprobs": {"content": "4"}}, "fast", "logprobs.content"),
}


def test_a_malformed_backend_answer_is_502_naming_the_field(serve_judge, triple):
    with ScriptedBackend() as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        for name, (choice, mode, where) in MALFORMED.items():
            item = {"restored": triple["restored"], "mode": mode} if mode == "iqa" else {**triple, "mode": mode}
            backend.answer, calls = {"choices": [choice]}, len(backend.bodies)
            one = httpx.post(f"{url}/v1/judge", json=item, timeout=30)
            batch = httpx.post(f"{url}/v1/judge/batch", json={"items": [item]}, timeout=30)
            assert len(backend.bodies) == calls + 2, name  # not retried: the backend would say the same again
            for response in (one, batch):
                assert response.status_code == 502, (name, response.text)
                assert "backend answer is not a usable chat completion" in response.json()["detail"], name
                assert where in response.json()["detail"], (name, response.text)
        for answer in ({"choices": []}, {"choices": "x"}, [1, 2], "text", {"choices": [None]}):
            backend.answer = answer
            response = httpx.post(f"{url}/v1/judge", json=triple, timeout=30)
            assert response.status_code == 502 and "not a usable chat completion" in response.json()["detail"], answer


def test_logprobs_a_hair_above_zero_are_rounding_not_malformed(serve_judge, triple):
    choice = _logprob_choice({"token": "4", "logprob": 3e-5}, [{"token": "4", "logprob": 3e-5}])
    with ScriptedBackend(answer={"choices": [choice]}) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        answer = httpx.post(f"{url}/v1/judge", json=triple, timeout=30).json()
    assert (answer["status"], answer["score"]) == ("ok", 4.0)
    assert answer["digit_mass"] == pytest.approx(1.0) and answer["digit_mass"] <= 1.0


def test_image_sizes_are_checked(serve_judge):
    def triple(**sizes):
        return {name: b64(image_bytes(seed, size=sizes.get(name, 64))) for seed, name in enumerate(("degraded", "restored", "reference"))}

    cases = [
        (triple(degraded=1, restored=1, reference=1), 400, "degraded: 1x1 is smaller than the judge model's minimum side of 28 px"),
        ({"restored": b64(image_bytes(0, size=20))}, 400, "restored: 20x20 is smaller than"),
        (triple(reference=48), 422, "the three images must have one size, got degraded 64x64, restored 64x64, reference 48x48"),
    ]
    with ScriptedBackend(logprobs=FAST) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        for body, status, message in cases:
            one = httpx.post(f"{url}/v1/judge", json=body, timeout=30)
            batch = httpx.post(f"{url}/v1/judge/batch", json={"items": [body]}, timeout=30)
            assert one.status_code == status and message in one.json()["detail"], one.text
            assert batch.status_code == status and batch.json()["detail"].startswith("items[0]."), batch.text
        assert backend.bodies == []
        with_min_side = triple(degraded=28, restored=28, reference=28)
    with ScriptedBackend(logprobs=FAST) as backend, serve_judge(backend_url=backend.url, model="judge-model") as url:
        assert httpx.post(f"{url}/v1/judge", json=with_min_side, timeout=30).json()["status"] == "ok"


def test_deeply_nested_json_is_400(serve_judge):
    deep = b'{"restored": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with serve_judge() as url:
        for route in ("/v1/judge", "/v1/judge/batch"):
            answer = httpx.post(f"{url}{route}", content=deep, headers={"content-type": "application/json"}, timeout=30)
            assert answer.status_code == 400 and "JSON nested deeper than" in answer.json()["detail"]


def test_hostile_bodies_are_short_4xx_answers(serve_judge):
    png = image_bytes(0)
    cases = {
        "four files": (dict(files={n: (f"{n}.png", png) for n in ("restored", "degraded", "reference", "extra")}), 400, "Too many files"),
        "task as a file": (dict(files={"restored": ("r.png", png), "task": ("t.txt", b"denoise")}), 422, "send them as text fields"),
        "restored as text": (dict(data={"restored": "abc"}, files={"degraded": ("d.png", png)}), 422, "restored: send it as a file"),
        "no boundary": (dict(content=b"x", headers={"content-type": "multipart/form-data"}), 400, "boundary"),
        "text/plain": (dict(content=b"{}", headers={"content-type": "text/plain"}), 415, "send application/json or multipart"),
        "NaN": (dict(content=b'{"restored": "x", "mode": NaN}', headers={"content-type": "application/json"}), 400, "NaN is not a JSON number"),
        "UTF-16": (dict(content='{"restored": "x"}'.encode("utf-16"), headers={"content-type": "application/json"}), 400, "UTF-8"),
        "a 1 MB key": (dict(json={"restored": "x", "k" * 1_000_000: 1}), 422, "Extra inputs are not permitted"),
    }
    with serve_judge() as url:
        for name, (request, status, message) in cases.items():
            answer = httpx.post(f"{url}/v1/judge", timeout=30, **request)
            assert answer.status_code == status and message in answer.text, (name, answer.status_code, answer.text[:300])
            assert len(answer.content) < 1000, name  # never the input echoed back
