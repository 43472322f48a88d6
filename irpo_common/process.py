"""Local servers for launchers, fixtures and benchmarks: a free loopback port, and one managed
process (start a command, wait for its readiness URL with a deadline, show its log on failure,
stop it with its whole process group)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessError(RuntimeError):
    """A managed process exited or stayed unready; the message carries the end of its log."""


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the thread that started it ends, even by SIGKILL of the parent."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class ManagedProcess:
    """`cmd` in its own process group, logging to `log_path`, serving at `url`; ready when GET
    `url + ready_path` answers 200.

    Its own group, so that stopping it takes its children (vLLM's engine, Ray's node processes)
    along. `die_with_parent` ties it to the starting thread: a killed run leaves no orphan server.
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        url: str,
        *,
        ready_path: str = "/readyz",
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        die_with_parent: bool = False,
    ):
        self.name, self.cmd, self.url, self.ready_url = name, list(cmd), url, url + ready_path
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen | None = None

    def launch(self) -> "ManagedProcess":
        """Start the process without waiting for it. A second launch while it runs is refused: it would orphan the
        first process (stop() only knows the latest), which keeps serving on the same port."""
        if self.proc is not None and self.proc.poll() is None:
            raise ProcessError(f"{self.name} is already running (pid {self.proc.pid}); stop() it first")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        return self

    def wait_ready(self, timeout_s: float) -> "ManagedProcess":
        """Poll the readiness URL until it answers 200; raise ProcessError (after stopping) otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProcessError(f"{self.name} exited with code {self.proc.returncode} while starting:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.ready_url, timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.25)
        self.stop()
        raise ProcessError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def start(self, timeout_s: float) -> "ManagedProcess":
        return self.launch().wait_ready(timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to the process group; after the leader exits (or `timeout_s`), SIGKILL to what is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)

    def __enter__(self) -> "ManagedProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
