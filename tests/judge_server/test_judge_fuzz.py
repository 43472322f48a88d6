"""Schema fuzz of the judge service, driven by its own OpenAPI document (schemathesis over real
HTTP on loopback, a scripted backend behind it): whatever the fuzzer sends, no answer is >= 500.

Bounded by a fixed number of examples per generation mode (deterministic: derandomized, no
example database), so the run takes about half a minute here.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from devtools.local_servers import ThreadedServer
from devtools.scripted_backend import FAST, ScriptedBackend
from judge_server.app import create_app
from judge_server.settings import JudgeSettings

EXAMPLES = 150  # per generation mode


@pytest.fixture(scope="module")
def judge_url():
    # no token: the fuzzed bodies must reach the validation, not stop at a 401
    with ScriptedBackend(logprobs=FAST) as backend, ThreadedServer(
        create_app(JudgeSettings(backend_url=backend.url, model="judge-model", max_batch=4))
    ) as server:
        yield server.url


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE], ids=str)
def test_no_fuzzed_request_gets_a_5xx(judge_url, mode):
    schema = schemathesis.openapi.from_dict(httpx.get(f"{judge_url}/openapi.json", timeout=30).json())
    codes: Counter = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=mode))
    def probe(case):
        response = case.call(base_url=judge_url, timeout=30)
        codes[(case.method, case.path, response.status_code)] += 1
        assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"

    probe()
    print(f"{mode}: {sorted(codes.items())}")
    assert {path for _, path, _ in codes} >= {"/v1/judge", "/v1/judge/batch"}  # the bodies were fuzzed


def test_the_document_declares_bodies_errors_and_the_bearer_scheme():
    with ThreadedServer(create_app(JudgeSettings(token="s3cret"))) as server:
        doc = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    one, batch = doc["paths"]["/v1/judge"]["post"], doc["paths"]["/v1/judge/batch"]["post"]
    assert set(one["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert set(batch["requestBody"]["content"]) == {"application/json"}
    multipart = one["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert multipart["required"] == ["restored"] and multipart["properties"]["reference"]["format"] == "binary"
    for op in (one, batch):
        assert {"400", "401", "408", "413", "415", "422", "502", "503", "504"} <= set(op["responses"])
        assert op["security"] == [{"bearerAuth": []}]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert {"JudgeRequest", "BatchRequest"} <= set(doc["components"]["schemas"])
    assert "open by design" in doc["info"]["description"]  # /docs and /openapi.json are open, and say so
