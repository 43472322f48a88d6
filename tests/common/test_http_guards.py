"""The shared HTTP guards, on a small app over real HTTP: empty tokens, 500s counted without
resetting the keep-alive connection, slow uploads, strict JSON and bounded 422s, one Problem body
for every error answer, the OpenAPI declarations."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from devtools.local_servers import ThreadedServer
from irpo_common.http_guards import BearerToken, BodyLimit, ClientGone, answer_shared_errors, bearer_guard, count_requests, on_error
from irpo_common.json_input import loads, validate, validation_detail
from irpo_common.openapi_doc import ApiDoc, operation_id
from irpo_common.problem import ErrorItem, Problem


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    score: float = Field(ge=0, le=1)


def _app(token: str | None = "s3cret") -> tuple[FastAPI, Counter]:
    app = FastAPI(title="guarded", generate_unique_id_function=operation_id)
    counter = Counter("requests", "requests", ["path", "status"], registry=CollectorRegistry())
    app.add_middleware(BodyLimit, max_bytes=300_000, timeout_s=1.0)
    count_requests(app, counter)
    guard = bearer_guard(SecretStr(token) if token else None)
    doc = ApiDoc()

    answer_shared_errors(app)

    @app.post("/v1/item", dependencies=[Depends(guard)], **doc.route("application/json", Item))
    async def item(request: Request):
        return validate(Item, await request.body()).model_dump()

    @app.get("/v1/gone", dependencies=[Depends(guard)])
    async def gone():
        raise ClientGone()

    @app.get("/v1/boom", dependencies=[Depends(guard)])
    async def boom():
        raise RuntimeError("a bug")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    doc.install(app, auth=token is not None)
    return app, counter


@pytest.fixture(scope="module")
def served():
    app, counter = _app()
    with ThreadedServer(app) as server:
        yield server, counter


def test_empty_token_is_a_startup_error():
    class S(BaseModel):
        token: BearerToken = None

    for empty in ("", "   "):
        with pytest.raises(ValidationError, match="token is empty"):
            S(token=empty)
    assert S().token is None and S(token="x").token.get_secret_value() == "x"
    with pytest.raises(ValueError, match="token is empty"):
        bearer_guard(SecretStr(""))


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer   ", "Basic s3cret", "Bearer wrong", "s3cret"])
def test_bearer_refuses_empty_or_wrong_credentials(served, header):
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:  # raw: httpx refuses "Bearer "
        answer = _raw_get(sock, "/v1/boom", header)
    assert answer.startswith(b"HTTP/1.1 401") and b"www-authenticate: Bearer" in answer.lower().replace(b"bearer", b"Bearer")


def _raw_get(sock: socket.socket, path: str, auth: str = "Bearer s3cret") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _counted(counter: Counter, path: str, status: str) -> bool:
    """The guard counts after the answer is sent: give it a moment (no speed is asserted)."""
    for _ in range(100):
        if counter.labels(path, status)._value.get() >= 1:
            return True
        time.sleep(0.05)
    return False


def test_500_is_counted_and_keeps_the_connection(served):
    server, counter = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        first = _raw_get(sock, "/v1/boom")
        assert first.startswith(b"HTTP/1.1 500") and b"internal error" in first and b"a bug" not in first
        second = _raw_get(sock, "/healthz")  # on the same keep-alive connection
        assert second.startswith(b"HTTP/1.1 200"), second
    assert _counted(counter, "/v1/boom", "500") and _counted(counter, "/healthz", "200")


class _Busy(Exception):
    pass


def test_guard_and_error_answers_never_wait_for_the_thread_pool():
    """A burst's sheds (the token check, then a 503 from an error handler) are answered on the event
    loop: with the thread pool taken by a blocking call they still come back at once."""
    import anyio.to_thread

    app = FastAPI()
    guard = bearer_guard(SecretStr("s3cret"))
    on_error(app, _Busy, lambda e: JSONResponse({"detail": "busy"}, status_code=503))
    release = threading.Event()

    @app.get("/block")
    async def block():
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1  # a pool of one thread, which
        await anyio.to_thread.run_sync(release.wait, 30)  # this call now holds
        return {}

    @app.get("/shed", dependencies=[Depends(guard)])
    async def shed():
        raise _Busy()

    with ThreadedServer(app) as server:
        blocked = threading.Thread(target=httpx.get, args=(server.url + "/block",), kwargs={"timeout": 60})
        blocked.start()
        try:
            time.sleep(0.5)  # /block holds the pool's only thread
            answer = httpx.get(server.url + "/shed", headers={"Authorization": "Bearer s3cret"}, timeout=10)
        finally:
            release.set()
            blocked.join()
    assert answer.status_code == 503 and answer.json() == {"detail": "busy"}


def test_slow_upload_gets_408(served):
    server, counter = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/item HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na")
        time.sleep(1.5)  # past the 1 s body deadline, 96 bytes still owed
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert _counted(counter, "/v1/item", "408")


@pytest.mark.parametrize(
    "body, fragment",
    [
        ('{"name": "a", "score": 0.5}'.encode("utf-16"), "byte-order mark"),
        ('{"name": "a", "score": 0.5}'.encode("utf-16-le"), "not UTF-8"),
        (b'{"name": "\xff\xfe", "score": 0.5}', "not UTF-8"),
        (b'{"name": "a", "score": NaN}', "NaN is not a JSON number"),
        (b'{"name": "a", "score": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"name": "a", "score": 1e999}', "out of the float range"),
        (b'{"name": "a", "score": 1' + b"0" * 400 + b"}", "out of the float range"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        (b'{"name": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b', "score": 0}', "nested deeper"),
        (b"{not json", "not valid JSON"),
    ],
    ids=["utf16-bom", "utf16-le", "latin1", "nan", "neg-inf", "overflow", "huge-int", "deep-list", "deep-object", "syntax"],
)
def test_bad_json_is_400_with_a_precise_message(served, body, fragment):
    server, _ = served
    r = httpx.post(server.url + "/v1/item", content=body, headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"})
    assert r.status_code == 400 and fragment in r.json()["detail"], r.text


def test_422_is_bounded_and_never_echoes_the_input(served):
    server, _ = served
    big = "Q" * 5000
    payload = {"name": 1, "score": 7, **{f"{big}{i}": big for i in range(15)}}
    r = httpx.post(server.url + "/v1/item", json=payload, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 422
    assert len(r.content) < 4000 and big not in r.text
    detail = r.json()["detail"]
    assert detail[-1]["type"] == "truncated" and any(d["loc"] == ["score"] for d in detail)


def test_validation_detail_survives_any_input():
    with pytest.raises(ValidationError) as err:
        Item.model_validate({"name": b"\xff", "score": float("nan")})
    json.dumps(validation_detail(err.value), allow_nan=False)  # no NaN, no bytes: always renderable


def test_loads_accepts_plain_json():
    assert loads(b'{"a": [1, 2.5, null, true, "\xc3\xa9"]}') == {"a": [1, 2.5, None, True, "é"]}


def test_openapi_declares_bodies_errors_and_bearer(served):
    server, _ = served
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    post = doc["paths"]["/v1/item"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Item"}
    assert {"400", "401", "408", "413", "415", "422", "503"} <= set(post["responses"])
    errors = [answer for code, answer in post["responses"].items() if code != "200"]
    assert all(a["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"} for a in errors)
    assert post["operationId"] == "item"
    schemas = doc["components"]["schemas"]
    assert schemas["Problem"]["properties"]["detail"]["anyOf"][1]["items"] == {"$ref": "#/components/schemas/ErrorItem"}
    assert schemas["ErrorItem"]["required"] == ["loc", "msg", "type"]
    assert post["security"] == [{"bearerAuth": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert "open by design" in doc["info"]["description"]
    assert doc["components"]["schemas"]["Item"]["additionalProperties"] is False


def test_every_error_answer_is_a_problem(served):
    """Bad JSON, a body off its schema, the token guard, the body limit, a client gone and the last-resort
    500 all answer with the one Problem body: a sentence, or a list of ErrorItem for the 422."""
    server, _ = served
    auth = {"Authorization": "Bearer s3cret"}
    answers = {
        400: httpx.post(server.url + "/v1/item", content=b"{", headers={**auth, "Content-Type": "application/json"}),
        422: httpx.post(server.url + "/v1/item", json={"name": "a", "score": 2}, headers=auth),
        401: httpx.post(server.url + "/v1/item", json={"name": "a", "score": 0.5}),
        413: httpx.post(server.url + "/v1/item", content=b"0" * 400_000, headers=auth),
        499: httpx.get(server.url + "/v1/gone", headers=auth),
        500: httpx.get(server.url + "/v1/boom", headers=auth),
    }
    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        problem = Problem.model_validate_json(answer.content)
        assert isinstance(problem.detail, list) == (status == 422), (status, answer.text)
    [item] = Problem.model_validate_json(answers[422].content).detail
    assert item == ErrorItem(loc=["score"], msg="Input should be less than or equal to 1", type="less_than_equal")
