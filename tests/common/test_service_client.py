"""Client-side balancing over service replicas (irpo_common/service_client.py), on real loopback
HTTP: least outstanding requests, failover on a refused connection and on 503, and the caller's
retry policy only when every replica failed."""

import threading
import time

import pytest
from fastapi import FastAPI, Response

from devtools.local_servers import ThreadedServer
from irpo_common.process import free_port
from reward_server.client import RewardClient, RewardServiceUnavailable


def _replica(status: int = 200, delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        time.sleep(delay_s)
        return Response('{"ok": true}', status_code=status, media_type="application/json")

    return app


def test_concurrent_requests_spread_by_least_outstanding():
    with ThreadedServer(_replica(delay_s=0.3)) as a, ThreadedServer(_replica(delay_s=0.3)) as b:
        client = RewardClient([a.url, b.url], retries=0)
        threads = [threading.Thread(target=client.healthz) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert client.sent == [2, 2]
        for _ in range(4):  # one at a time: ties rotate, so a sequential caller is not pinned either
            client.healthz()
        assert client.sent == [4, 4]


def test_a_refused_connection_or_a_503_fails_over_to_the_next_replica():
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with ThreadedServer(_replica(status=503)) as busy, ThreadedServer(_replica()) as good:
        client = RewardClient([dead, busy.url, good.url], retries=0)
        for _ in range(3):
            assert client.healthz() == {"ok": True}  # retries=0: the failover is within the one attempt
        assert client.sent[2] == 3


def test_when_every_replica_fails_the_retry_policy_decides():
    dead = f"http://127.0.0.1:{free_port()}"
    with ThreadedServer(_replica(status=503)) as busy:
        client = RewardClient([dead, busy.url], retries=1, backoff_s=0.01)
        with pytest.raises(RewardServiceUnavailable, match="no answer after 2 attempts"):
            client.healthz()
        assert client.sent == [2, 2]
