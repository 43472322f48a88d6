"""Settings: defaults < YAML file < JUDGE_SERVER_* env vars, with typos refused."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from irpo_common.process import ManagedProcess, free_port
from judge_server.settings import SettingsError, load_settings


def test_defaults_are_loopback_port_8200_and_qwen():
    s = load_settings(None, environ={})
    assert (s.host, s.port, s.model) == ("127.0.0.1", 8200, "Qwen/Qwen2.5-VL-7B-Instruct")
    assert s.token is None


def test_env_overrides_yaml(tmp_path):
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("model: from-yaml\nmax_concurrency: 3\nmin_digit_mass: 0.7\n")
    env = {"JUDGE_SERVER_MODEL": "from-env", "JUDGE_SERVER_TOKEN": "s3cret", "JUDGE_SERVER_BACKEND_API_KEY": "k", "OTHER": "x"}
    s = load_settings(cfg, environ=env)
    assert s.model == "from-env"
    assert s.max_concurrency == 3 and s.min_digit_mass == 0.7
    assert s.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_an_empty_token_is_a_start_up_error_not_auth_with_an_empty_secret():
    with pytest.raises(SettingsError, match="token is empty"):
        load_settings(None, environ={"JUDGE_SERVER_TOKEN": ""})
    done = subprocess.run([sys.executable, "-m", "judge_server.cli"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "JUDGE_SERVER_TOKEN": " "})
    assert done.returncode == 2 and "token is empty" in done.stderr and "Traceback" not in done.stderr


def test_unknown_env_var_is_refused():
    with pytest.raises(SettingsError, match="unknown environment variable JUDGE_SERVER_MODLE"):
        load_settings(None, environ={"JUDGE_SERVER_MODLE": "x"})


def test_unknown_yaml_key_and_bad_values_are_refused(tmp_path):
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("max_concurency: 3\n")
    with pytest.raises(SettingsError, match="max_concurency"):
        load_settings(cfg, environ={})
    with pytest.raises(SettingsError, match="min_digit_mass"):
        load_settings(None, environ={"JUDGE_SERVER_MIN_DIGIT_MASS": "1.5"})
    cfg.write_text("- a list\n")
    with pytest.raises(SettingsError, match="mapping"):
        load_settings(cfg, environ={})


def test_cli_stops_with_a_clear_message_on_a_bad_config(tmp_path):
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("port: not-a-port\n")
    done = subprocess.run([sys.executable, "-m", "judge_server.cli", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "judge-server: invalid judge settings" in done.stderr and "port" in done.stderr


def test_cli_refuses_an_impossible_port_without_a_traceback():
    done = subprocess.run([sys.executable, "-m", "judge_server.cli", "--port", "99999"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "judge-server: invalid judge settings" in done.stderr and "port" in done.stderr and "65535" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_serves_on_loopback(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "judge_server.cli", "--port", str(port)]
    with ManagedProcess("judge-server", cmd, f"http://127.0.0.1:{port}", ready_path="/v1/info",
                        env={"JUDGE_SERVER_MODEL": "some-model"}, log_path=tmp_path / "log").start(20) as proc:
        info = httpx.get(f"{proc.url}/v1/info", timeout=2).json()
    assert info["model"] == "some-model"
    assert f"listening on 127.0.0.1:{port}" in proc.log_tail()
