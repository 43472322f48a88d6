"""Servers on loopback for tests and benchmarks (development tools, never deployed): a vLLM CPU
server and an in-process ASGI app.

LocalVLLM runs `python -m vllm.entrypoints.openai.api_server` from .venv-vllm (built by
scripts/setup_vllm_cpu.sh) on 127.0.0.1, serving the tiny RANDOM-WEIGHT Qwen2.5-VL by default,
in its own process group so that stopping it takes its engine processes along.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import uvicorn

from irpo_common.process import ManagedProcess, free_port

REPO = Path(__file__).resolve().parent.parent  # the source tree: devtools is never installed elsewhere
VLLM_VENV = REPO / ".venv-vllm"
TINY_MODEL = VLLM_VENV / "models" / "tiny-qwen2.5-vl"


def vllm_unavailable_reason() -> str | None:
    """Why LocalVLLM cannot run here, or None when the venv and the tiny model are built."""
    if not (VLLM_VENV / ".setup-stamp").is_file():
        return f"{VLLM_VENV} is not built (or its build failed): run `bash scripts/setup_vllm_cpu.sh`"
    if not (TINY_MODEL / "config.json").is_file():
        return f"tiny model missing at {TINY_MODEL}: rerun `bash scripts/setup_vllm_cpu.sh`"
    return None


class LocalVLLM(ManagedProcess):
    def __init__(self, model_dir: Path = TINY_MODEL, served_name: str = "tiny-qwen2.5-vl", log_path: Path | None = None,
                 prefix_caching: bool = True):
        self.model_dir, self.served_name = model_dir, served_name
        self.port = free_port()
        env = {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the tiny model needs little
            "VLLM_HOST_IP": "127.0.0.1",  # vLLM's internal queues would bind the machine's address
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            # with "--distributed-executor-backend uni" below: the model worker runs inside the
            # engine process instead of a third interpreter (each start costs tens of seconds here)
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        }
        cmd = [
            str(VLLM_VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir), "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager",
            "--distributed-executor-backend", "uni",
            "--limit-mm-per-prompt", json.dumps({"image": 3, "video": 0}),
            "--uvicorn-log-level", "warning",
            # as in docker-compose.yml: a group's G judge prompts share text, degraded input and reference
            # (judge_server/prompts.py); vLLM reuses cached KV blocks of a shared prefix. 32-token blocks
            # (the CPU default is 128, GPUs use 16) so that a prefix of a few small images fills whole blocks.
            "--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching", "--block-size", "32",
            "--enable-prompt-tokens-details",  # usage.prompt_tokens_details.cached_tokens: tests see the reuse
        ]
        super().__init__("vLLM", cmd, f"http://127.0.0.1:{self.port}/v1", ready_path="/models", env=env, log_path=log_path)

    def start(self, timeout_s: float = 180.0) -> "LocalVLLM":
        return super().start(timeout_s)


class ThreadedServer:
    """Serves an ASGI app with uvicorn on 127.0.0.1 in a background thread (real HTTP, one process)."""

    def __init__(self, app, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> "ThreadedServer":
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
