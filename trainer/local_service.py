"""A reward service on loopback for a single-machine run (the demo), started and stopped by the run."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from irpo_common.process import ManagedProcess, free_port
from trainer.config import RewardConfig


class LocalRewardService(ManagedProcess):
    """`python -m reward_server.cli` on 127.0.0.1; dies with the thread that launched it."""

    def __init__(self, args: list[str], port: int | None = None, log_path: Path | None = None, threads: int | None = None, settings: dict[str, str] | None = None):
        self.port = port or free_port()
        env = {"HF_HUB_OFFLINE": "1", **(settings or {})}  # REWARD_SERVER_* variables override the service's --config file
        if threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        cmd = [sys.executable, "-m", "reward_server.cli", "--host", "127.0.0.1", "--port", str(self.port), *args]
        super().__init__("reward service", cmd, f"http://127.0.0.1:{self.port}", env=env, log_path=log_path, die_with_parent=True)

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
