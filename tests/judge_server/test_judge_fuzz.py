"""Schema fuzz of the judge service, driven by its own OpenAPI document (devtools/schema_fuzz.py:
schemathesis over real HTTP on loopback, a scripted backend behind it): whatever the fuzzer sends,
with or without the right token, no answer is >= 500.

Bounded by a fixed number of examples per operation and generation mode, with a fixed seed.
"""

from __future__ import annotations

import httpx

from devtools.local_servers import ThreadedServer
from devtools.schema_fuzz import fuzz
from devtools.scripted_backend import FAST, ScriptedBackend
from judge_server.app import create_app
from judge_server.settings import JudgeSettings

EXAMPLES = 30  # per operation and generation mode


def test_no_fuzzed_request_gets_a_5xx():
    settings = dict(model="judge-model", token="fuzz-token", max_batch=4)
    with ScriptedBackend(logprobs=FAST) as backend, ThreadedServer(create_app(JudgeSettings(backend_url=backend.url, **settings))) as server:
        report = fuzz(server.url, token="fuzz-token", examples=EXAMPLES)
    print(f"{report.calls} calls: {report.summary()}")
    assert not report.failures, "\n\n".join(report.failures[:5])
    judged = report.statuses["POST /v1/judge"] + report.statuses["POST /v1/judge/batch"]
    assert sum(judged.values()) >= 4 * EXAMPLES and set(judged) - {401}  # the bodies were fuzzed past the token check


def test_the_document_declares_bodies_errors_and_the_bearer_scheme():
    with ThreadedServer(create_app(JudgeSettings(token="s3cret"))) as server:
        doc = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    ops = {path: doc["paths"][path]["post"] for path in ("/v1/judge", "/v1/judge/upload", "/v1/judge/batch")}
    # one body media type per operation (generated clients break on two), each body a named model
    assert {path: list(op["requestBody"]["content"]) for path, op in ops.items()} == {
        "/v1/judge": ["application/json"], "/v1/judge/upload": ["multipart/form-data"], "/v1/judge/batch": ["application/json"]}
    assert [op["operationId"] for op in ops.values()] == ["judge", "judge_upload", "judge_batch"]
    multipart = doc["components"]["schemas"]["JudgeUpload"]
    assert multipart["required"] == ["restored"] and multipart["properties"]["reference"]["format"] == "binary"
    for op in ops.values():
        errors = {code: answer for code, answer in op["responses"].items() if code != "200"}
        assert {"400", "401", "408", "413", "415", "422", "502", "503", "504"} == set(errors)
        assert all(a["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"} for a in errors.values())
        assert op["security"] == [{"bearerAuth": []}]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert {"JudgeRequest", "BatchRequest", "JudgeUpload", "Problem", "ErrorItem"} <= set(doc["components"]["schemas"])
    assert "open by design" in doc["info"]["description"]  # /docs and /openapi.json are open, and say so
