"""Fixtures of the judge service tests: test images, judge apps on loopback, a real vLLM server.

The vLLM server (tiny RANDOM-WEIGHT Qwen2.5-VL from .venv-vllm) is started once per session and
only by tests that ask for it; when .venv-vllm is not built they skip with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from devtools.local_servers import LocalVLLM, ThreadedServer, vllm_unavailable_reason
from judge_server.app import create_app
from judge_server.settings import JudgeSettings
from judge_images import b64, image_bytes


@pytest.fixture
def triple() -> dict[str, str]:
    """degraded / restored / reference as base64 PNG."""
    return {name: b64(image_bytes(seed)) for seed, name in enumerate(("degraded", "restored", "reference"))}


@pytest.fixture(scope="session")
def serve_judge() -> Callable:
    """serve_judge(**settings) -> context manager yielding the base URL of a judge service."""

    @contextmanager
    def serve(**overrides) -> Iterator[str]:
        with ThreadedServer(create_app(JudgeSettings(**overrides))) as server:
            yield server.url

    return serve


@pytest.fixture(scope="session")
def vllm(tmp_path_factory) -> Iterator[LocalVLLM]:
    reason = vllm_unavailable_reason()
    if reason:
        pytest.skip(f"SKIPPING the real-vLLM judge tests: {reason}")
    server = LocalVLLM(log_path=tmp_path_factory.mktemp("vllm") / "vllm.log")
    server.start(timeout_s=180)
    try:
        yield server
    finally:
        server.stop()
