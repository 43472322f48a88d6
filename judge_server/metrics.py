"""Prometheus metrics of one service instance (own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class JudgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "judge_http_requests", "HTTP requests by route and status code", ["route", "code"], registry=self.registry
        )
        self.items = Counter("judge_items", "Judged items by mode and result status", ["mode", "status"], registry=self.registry)
        self.cache_hits = Counter("judge_cache_hits", "Items answered from the LRU cache", registry=self.registry)
        self.backend_failures = Counter(
            "judge_backend_failures", "Requests failed by the backend, by kind", ["kind"], registry=self.registry
        )
        self.backend_latency = Histogram(
            "judge_backend_latency_seconds", "Backend chat completion latency by mode", ["mode"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
