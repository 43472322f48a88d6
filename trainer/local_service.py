"""A reward service on loopback for a single-machine run (the demo), started and stopped by the run."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from reward_server.ports import free_port
from trainer.config import RewardConfig


def _die_with_parent() -> None:
    """Linux: the service gets SIGTERM when the thread that started it ends, even by SIGKILL of the run."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class LocalServiceError(RuntimeError):
    """The local service did not start; the message carries the end of its log."""



class LocalRewardService:
    """`python -m reward_server.cli` on 127.0.0.1 in its own process group; ready when /readyz answers 200."""

    def __init__(self, args: list[str], port: int | None = None, log_path: Path | None = None, threads: int | None = None, settings: dict[str, str] | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="reward-server-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.threads = threads
        self.settings = settings or {}  # REWARD_SERVER_* variables: they override the service's --config file

    def start(self, timeout_s: float) -> "LocalRewardService":
        return self.launch().wait_ready(timeout_s)

    def launch(self) -> "LocalRewardService":
        """Start the process without waiting (from a long-lived thread: it dies with the thread that started it)."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **self.settings}
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        cmd = [sys.executable, "-m", "reward_server.cli", "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        return self

    def wait_ready(self, timeout_s: float) -> "LocalRewardService":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalServiceError(f"reward service exited with code {self.proc.returncode} while starting:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.25)
        self.stop()
        raise LocalServiceError(f"reward service not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @classmethod
    @contextlib.contextmanager
    def maybe(cls, cfg: RewardConfig, log_path: Path | None = None) -> Iterator[str | None]:
        """Yield the URL of a started local service when cfg.start_local, else None (use cfg.url)."""
        if not cfg.start_local:
            yield None
            return
        settings = {"REWARD_SERVER_PSNR_RANGE_DB": json.dumps(list(cfg.psnr_range_db))} if cfg.psnr_range_db else None
        service = cls(cfg.local_args, log_path=log_path, threads=cfg.local_threads, settings=settings)
        print(f"[grpo] starting a local reward service on {service.url} (log {service.log_path}){' with ' + str(settings) if settings else ''}", flush=True)
        service.start(cfg.local_start_timeout_s)
        try:
            yield service.url
        finally:
            service.stop()
