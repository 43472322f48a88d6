"""What the services' Python clients share: an HTTP connection pool per replica with the bearer token,
least-outstanding-requests balancing over the replicas, and failover.

A request goes to the replica with the fewest requests this client has in flight (ties rotate, so a
sequential caller spreads too): each replica has its own keep-alive pool, so a client is never pinned
to one replica the way a load balancer's kept-alive connection pins it. A replica that refuses the
connection or answers 503 (overloaded, loading, its backend down) is passed over for the next one
within the same attempt; only when every replica failed does the caller's retry policy see it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import httpx

FAILOVER_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)  # nothing was sent: safe to send elsewhere


class ServiceClient:
    def __init__(self, base_urls: str | Sequence[str], token: str | None, timeout_s: float):
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("a service client needs at least one URL")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._replicas = [httpx.Client(base_url=u.rstrip("/"), headers=headers, timeout=timeout_s) for u in urls]
        self.outstanding = [0] * len(urls)  # requests in flight per replica
        self.sent = [0] * len(urls)  # requests sent per replica (tests and logs)
        self._turn = 0
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return ", ".join(str(r.base_url) for r in self._replicas)

    def _order(self) -> list[int]:
        with self._lock:
            n, turn = len(self._replicas), self._turn
            self._turn += 1
            return sorted(range(n), key=lambda i: (self.outstanding[i], (i - turn) % n))

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One attempt over the replicas, least outstanding first; the last replica's outcome (an
        exception or a response, 503 included) is the caller's to handle."""
        order = self._order()
        for k, i in enumerate(order):
            last = k == len(order) - 1
            with self._lock:
                self.outstanding[i] += 1
                self.sent[i] += 1
            try:
                resp = self._replicas[i].request(method, path, **kwargs)
            except FAILOVER_ERRORS:
                if last:
                    raise
                continue
            finally:
                with self._lock:
                    self.outstanding[i] -= 1
            if resp.status_code == 503 and not last:
                continue
            return resp
        raise AssertionError("unreachable: the last replica returns or raises")

    def close(self) -> None:
        for r in self._replicas:
            r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
