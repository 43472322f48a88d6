"""What the services' Python clients share: one HTTP connection pool with the bearer token."""

from __future__ import annotations

import httpx


class ServiceClient:
    def __init__(self, base_url: str, token: str | None, timeout_s: float):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
