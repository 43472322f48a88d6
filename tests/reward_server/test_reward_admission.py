"""Overload and faults (issue 14), in-process over real HTTP with a gated stand-in scorer: the service
sheds what it cannot take with 503 + Retry-After, drops work whose client left or whose deadline
passed, isolates a failing item from its batch-mates and opens its port before the models load.

The stand-in scorer holds the device until the test opens its gate, so every state is reached
deterministically (no timing is asserted).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import reward_images as im

from devtools.local_servers import ThreadedServer
from irpo_common.imaging import encode_base64_png
from reward_server import app as app_module
from reward_server.admission import Admission
from reward_server.batching import Overloaded
from reward_server.config import RewardSettings
from reward_server.schemas import ItemResult

GOOD = {"restored": encode_base64_png(im.hwc(im.photo(0, size=32))), "weights": {"gen": 0.0, "judge": 1.0}, "judge": 0.5}
POISON = {**GOOD, "restored": encode_base64_png(im.hwc(im.photo(0, size=33)))}  # the stand-in fails on 33 px
RESULT = ItemResult(reward=0.5, task=None, terms={"judge": 0.5}, metrics={}, weights={"judge": 1.0}, skipped={},
                    renormalised=False, random_weights=[], precision={})


class GatedScorer:
    """Blocks in score() until `gate` is set; records every item it scored and each batch size."""

    gate = threading.Event()
    entered = threading.Event()
    scored: list = []
    batches: list[int] = []

    def __init__(self, models, settings):
        pass

    def score(self, items):
        GatedScorer.entered.set()
        assert GatedScorer.gate.wait(60), "the test never opened the gate"
        GatedScorer.batches.append(len(items))
        if any(it.restored.shape[-1] == 33 for it in items):
            raise RuntimeError("a model crashed on this item")
        GatedScorer.scored.extend(items)
        return [RESULT] * len(items)


@pytest.fixture
def serve(monkeypatch):
    """Start the app with the stand-in scorer and the given settings; yields a starter."""
    monkeypatch.setattr(app_module, "Scorer", GatedScorer)
    GatedScorer.gate.clear()
    GatedScorer.entered.clear()
    GatedScorer.scored, GatedScorer.batches = [], []
    servers = []

    def start(models=object(), **overrides) -> ThreadedServer:
        settings = RewardSettings(**{"micro_batch_size": 1, "micro_batch_wait_ms": 0, **overrides})
        server = ThreadedServer(app_module.create_app(settings, models)).__enter__()
        servers.append(server)
        return server

    yield start
    GatedScorer.gate.set()
    for s in servers:
        s.__exit__(None, None, None)


def _metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(url + "/metrics").text
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _until(cond, what: str, timeout_s: float = 30.0) -> None:
    """Wait for a state of the service (a bound against a hang, not a speed check)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.02)


def _post(url: str, payload=GOOD, timeout: float = 60.0) -> httpx.Response:
    return httpx.post(url + "/v1/score", json=payload, timeout=timeout)


def test_requests_beyond_the_admission_limit_get_503_with_retry_after(serve):
    server = serve(max_pending_requests=3)
    with ThreadPoolExecutor(3) as pool:
        admitted = [pool.submit(_post, server.url) for _ in range(3)]
        _until(lambda: _metric(server.url, "reward_requests_pending") == 3, "3 requests admitted")
        shed = [_post(server.url) for _ in range(5)]
        GatedScorer.gate.set()
        done = [f.result() for f in admitted]
    assert [r.status_code for r in shed] == [503] * 5
    assert all(r.headers["retry-after"] == "1" and "overloaded" in r.json()["detail"] for r in shed)
    assert [r.status_code for r in done] == [200] * 3 and len(GatedScorer.scored) == 3


def test_requests_are_shed_when_the_work_in_flight_would_take_longer_than_max_queue_wait():
    async def scenario():
        adm = Admission(max_pending=100, timeout_s=10.0, max_wait_s=1.0)
        async with adm.slot() as first:
            adm.read(first, 8)
            async with adm.slot():  # no batch timed yet: only the count bounds admission
                pass
            adm.observe_batch(4, 1.0)  # 0.25 s per item: the 8 items in flight need 2 s
            with pytest.raises(Overloaded, match=r"1 requests in flight need about 2.0 s of scoring; the limit is 1 s") as shed:
                async with adm.slot():
                    pass
            assert shed.value.retry_after_s == 2
        async with adm.slot() as alone:  # nothing in flight: taken, whatever its own size
            adm.read(alone, 2)  # 0.5 s
            async with adm.slot():  # taken: 0.5 s expected; its body unread, it counts as the mean request
                with pytest.raises(Overloaded):  # 2 + 2.32 items (the running mean after 8 and 2) x 0.25 s > 1 s
                    async with adm.slot():
                        pass
        assert adm.pending == 0 and adm.expected_wait_s() == 0.0

    asyncio.run(scenario())


def test_a_full_queue_sheds_with_503(serve):
    server = serve(max_queue_items=2)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(_post, server.url)  # taken by the scorer, held at the gate
        _until(GatedScorer.entered.is_set, "first item on the device")
        queued = [pool.submit(_post, server.url) for _ in range(2)]
        _until(lambda: _metric(server.url, "reward_queue_items") == 2, "2 items queued")
        shed = _post(server.url)
        GatedScorer.gate.set()
        results = [first.result(), *(f.result() for f in queued)]
    assert shed.status_code == 503 and "2 items queued; the limit is 2" in shed.json()["detail"] and shed.headers["retry-after"]
    assert [r.status_code for r in results] == [200] * 3


def test_past_its_deadline_a_request_gets_503_and_its_queued_items_are_dropped(serve):
    server = serve(request_timeout_s=1.0)
    with ThreadPoolExecutor(2) as pool:
        on_device = pool.submit(_post, server.url)
        _until(GatedScorer.entered.is_set, "first item on the device")
        waiting = pool.submit(_post, server.url)
        late = [on_device.result(), waiting.result()]  # both pass their 1 s deadline while the gate is shut
    assert [r.status_code for r in late] == [503, 503]
    assert "deadline" in late[1].json()["detail"] and late[1].headers["retry-after"]
    GatedScorer.gate.set()
    _until(lambda: _metric(server.url, "reward_items_dropped_total") == 1, "the waiting item dropped")
    assert len(GatedScorer.scored) == 1  # only the item already on the device when its deadline passed


def test_work_of_a_disconnected_client_is_never_scored(serve):
    server = serve()
    with ThreadPoolExecutor(1) as pool:
        on_device = pool.submit(_post, server.url)
        _until(GatedScorer.entered.is_set, "first item on the device")
        for _ in range(3):  # a client that gives up, and its two retries
            with pytest.raises(httpx.ReadTimeout):
                _post(server.url, timeout=0.5)
        _until(lambda: _metric(server.url, "reward_requests_total", '{path="/v1/score",status="499"}') == 3, "3 departures seen")
        GatedScorer.gate.set()
        assert on_device.result().status_code == 200
    _until(lambda: _metric(server.url, "reward_items_dropped_total") == 3, "the abandoned items dropped")
    assert len(GatedScorer.scored) == 1


def test_a_failing_item_does_not_fail_its_batch_mates(serve):
    server = serve(micro_batch_size=8, micro_batch_wait_ms=0)
    with ThreadPoolExecutor(9) as pool:
        blocker = pool.submit(_post, server.url)
        _until(GatedScorer.entered.is_set, "first item on the device")
        mates = [pool.submit(_post, server.url, POISON if i == 3 else GOOD) for i in range(8)]
        _until(lambda: _metric(server.url, "reward_queue_items") == 8, "8 items queued")
        GatedScorer.gate.set()
        answers = [f.result() for f in mates]
        assert blocker.result().status_code == 200
    assert GatedScorer.batches[:2] == [1, 8]  # the 8 were one micro-batch; it failed, then each item went alone
    assert [a.status_code for a in answers] == [200, 200, 200, 500, 200, 200, 200, 200]
    assert "scoring failed: RuntimeError" in answers[3].json()["detail"] and "crashed" not in answers[3].text
    _until(lambda: _metric(server.url, "reward_requests_total", '{path="/v1/score",status="500"}') == 1, "the 500 counted")


def test_port_opens_before_the_models_load(serve, monkeypatch):
    loaded = threading.Event()
    monkeypatch.setattr(app_module, "load_models", lambda settings, device: loaded.wait(60) and object())
    server = serve(models=None)
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 503 and ready.json() == {"ready": False, "detail": "models are loading"}
    assert httpx.get(server.url + "/healthz").status_code == 200
    busy = _post(server.url)
    assert busy.status_code == 503 and busy.headers["retry-after"] and "loading" in busy.json()["detail"]
    loaded.set()
    _until(lambda: httpx.get(server.url + "/readyz").status_code == 200, "ready once loaded")


def test_a_failed_model_load_fails_the_probes_with_its_reason(serve, monkeypatch):
    def broken(settings, device):
        raise OSError("aesthetic head: truncated file")

    monkeypatch.setattr(app_module, "load_models", broken)
    server = serve(models=None)
    _until(lambda: httpx.get(server.url + "/healthz").status_code == 503, "liveness fails")
    assert "truncated file" in httpx.get(server.url + "/readyz").json()["detail"]


def test_an_empty_token_stops_the_cli_before_anything_loads(monkeypatch, capsys):
    from reward_server import cli

    monkeypatch.setenv("REWARD_SERVER_TOKEN", "")
    with pytest.raises(SystemExit) as stop:
        cli.main(["--random-weights"])
    assert "cannot start" in str(stop.value) and "token is empty" in str(stop.value)
