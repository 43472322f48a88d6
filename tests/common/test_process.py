"""The one managed-process helper: ready on its URL, a clear error with the log, stopped with its group."""

from __future__ import annotations

import sys

import pytest

from irpo_common.process import ManagedProcess, ProcessError, free_port


def _http_server(port: int) -> list[str]:
    # /readyz answers 404 with http.server, so the readiness path is "/" here
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def test_starts_waits_for_readiness_and_stops(tmp_path):
    port = free_port()
    proc = ManagedProcess("http.server", _http_server(port), f"http://127.0.0.1:{port}", ready_path="/",
                          log_path=tmp_path / "log")
    with proc.start(30):
        assert proc.proc.poll() is None
    assert proc.proc.poll() is not None


def test_an_exiting_command_fails_with_its_log(tmp_path):
    cmd = [sys.executable, "-c", "import sys; print('boom: bad flag'); sys.exit(3)"]
    with pytest.raises(ProcessError, match=r"(?s)exited with code 3.*boom: bad flag"):
        ManagedProcess("failing", cmd, f"http://127.0.0.1:{free_port()}", log_path=tmp_path / "log").start(30)


def test_a_server_that_never_gets_ready_is_stopped_at_the_deadline(tmp_path):
    port = free_port()
    proc = ManagedProcess("never ready", _http_server(port), f"http://127.0.0.1:{port}", ready_path="/missing",
                          log_path=tmp_path / "log")
    with pytest.raises(ProcessError, match="not ready after 1 s"):
        proc.start(1)
    assert proc.proc.poll() is not None


def test_a_second_start_while_running_is_refused_and_leaves_no_orphan(tmp_path):
    # the GPU check once entered a started LocalVLLM, whose __enter__ started it again: stop() then killed only the
    # second process and the first kept serving after the check (found as leftover vLLM servers after test runs)
    port = free_port()
    proc = ManagedProcess("http.server", _http_server(port), f"http://127.0.0.1:{port}", ready_path="/",
                          log_path=tmp_path / "log")
    with proc.start(30):
        first = proc.proc
        with pytest.raises(ProcessError, match="already running"):
            proc.start(30)
        assert proc.proc is first
    assert first.poll() is not None
