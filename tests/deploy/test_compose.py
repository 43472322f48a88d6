"""docker-compose.yml and deploy/compose.cpu.yaml agree with the services' code.

No Docker engine runs here, so the files are checked statically: every variable, port, health
path, command and model name they use is one the code really reads, serves or accepts.
"""

from __future__ import annotations

import json

import pytest
from deploy_files import (
    COMPOSE,
    COMPOSE_CPU,
    REPO,
    SECRETS_EXAMPLE,
    VLLM_DEFAULT_PORT,
    VLLM_HEALTH_PATHS,
    RUNTIME_ENV,
    Tagged,
    cli_flags,
    container_ports,
    dockerfile_stages,
    env_file_names,
    environment,
    flag_value,
    gpu_devices,
    healthcheck_url,
    judge_env_names,
    judge_get_routes,
    judge_settings_from_env,
    load_compose,
    pyproject,
    reward_env_names,
    reward_get_routes,
    reward_settings_from_env,
    service_kind,
    with_defaults,
)

from judge_server.judge import IMAGE_FIELDS


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def cpu_override() -> dict:
    return load_compose(COMPOSE_CPU)


def built_stage(service: dict):
    build = service["build"]
    stages = dockerfile_stages(REPO / build["context"] / build["dockerfile"])
    assert build["target"] in stages, f"{build['dockerfile']} has no stage {build['target']!r}"
    return stages[build["target"]]


def service_env(service: dict) -> dict[str, str]:
    """What the container sees: the image's ENV, then `environment` (env_file: see test_secrets_example_names_token_settings)."""
    return {**built_stage(service).env, **environment(service)}


def our_services(compose: dict) -> dict[str, str]:
    """Compose service name -> 'reward' / 'judge', from the console script its image runs."""
    return {name: service_kind(built_stage(s).entrypoint) for name, s in compose["services"].items() if "build" in s}


def test_compose_starts_vllm_judge_and_reward(compose):
    assert sorted(our_services(compose).values()) == ["judge", "reward"]
    for name, kind in our_services(compose).items():
        assert compose["services"][name]["image"] == f"irpo-{kind}:{pyproject()['project']['version']}"
    assert compose["services"]["vllm"]["image"].startswith("vllm/vllm-openai:${")  # tag pinned by a variable
    for name, service in compose["services"].items():
        assert "healthcheck" in service, f"{name}: no health check"


def test_every_variable_has_a_default(compose, cpu_override):
    with_defaults(compose)  # raises on ${X} or ${X:?} without a default
    with_defaults(cpu_override)


def test_service_environment_names_are_settings_fields(compose):
    known = {"reward": reward_env_names(), "judge": judge_env_names()}
    for name, kind in our_services(compose).items():
        unknown = set(service_env(compose["services"][name])) - known[kind] - RUNTIME_ENV
        assert not unknown, f"{name}: not settings of the {kind} service (typo or renamed field?): {sorted(unknown)}"


def test_service_environment_values_validate(compose, monkeypatch):
    for name, kind in our_services(compose).items():
        env = {k: v for k, v in service_env(compose["services"][name]).items() if f"{kind.upper()}_SERVER_" in k}
        if kind == "reward":
            settings = reward_settings_from_env(env, monkeypatch)
            assert settings.device.startswith("cuda"), "the GPU deployment must fail loudly without a GPU, not fall back to cpu"
            assert str(settings.weights_dir) in {v.split(":")[1] for v in map(with_defaults, compose["services"][name]["volumes"])}
        else:
            settings = judge_settings_from_env(env)
        assert settings.host == "0.0.0.0", f"{name}: must listen beyond the container's loopback"


def test_ports_and_health_checks_match_the_services(compose, monkeypatch):
    routes = {"reward": reward_get_routes(), "judge": judge_get_routes()}
    for name, kind in our_services(compose).items():
        service = compose["services"][name]
        env = {k: v for k, v in service_env(service).items() if f"{kind.upper()}_SERVER_" in k}
        settings = reward_settings_from_env(env, monkeypatch) if kind == "reward" else judge_settings_from_env(env)
        assert container_ports(service) == [settings.port], f"{name}: publishes {container_ports(service)}, serves {settings.port}"
        assert settings.port in built_stage(service).expose, f"{name}: the image does not EXPOSE {settings.port}"
        port, path = healthcheck_url(service)
        assert port == settings.port, f"{name}: health check on port {port}, service on {settings.port}"
        assert path in routes[kind], f"{name}: health path {path} is not a GET route of the {kind} app ({sorted(routes[kind])})"


def test_vllm_serves_what_the_judge_asks_for(compose):
    vllm, judge = compose["services"]["vllm"], compose["services"]["judge"]
    args = with_defaults(vllm["command"])
    port = int(flag_value(args, "--port") or VLLM_DEFAULT_PORT)
    assert container_ports(vllm) == [port]
    health_port, health_path = healthcheck_url(vllm)
    assert (health_port, health_path in VLLM_HEALTH_PATHS) == (port, True)
    settings = judge_settings_from_env({k: v for k, v in service_env(judge).items() if k.startswith("JUDGE_SERVER_")})
    assert settings.backend_url == f"http://vllm:{port}/v1"
    assert settings.model == (flag_value(args, "--served-model-name") or flag_value(args, "--model"))
    limits = json.loads(flag_value(args, "--limit-mm-per-prompt"))
    assert "--enable-prefix-caching" in args  # a group's judge prompts share text, degraded input and reference
    assert limits["image"] >= len(IMAGE_FIELDS), "the judge sends degraded, restored and reference in one prompt"
    assert judge["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "ipc" in vllm and any(v.endswith(":/root/.cache/huggingface") for v in vllm["volumes"])
    assert vllm["volumes"][0].split(":")[0] in compose["volumes"], "the model cache is a named volume"


def test_vllm_and_reward_get_their_own_gpus(compose):
    ids = {}
    for name in ("vllm", "reward"):
        [device] = gpu_devices(compose["services"][name])
        ids[name] = set(with_defaults(device["device_ids"]))
    assert not ids["vllm"] & ids["reward"], f"vLLM and the reward service share GPUs {ids}"


def test_cpu_override_removes_every_gpu_reservation(compose, cpu_override):
    services = cpu_override["services"]
    assert set(services) <= set(compose["services"])
    for name, service in compose["services"].items():
        if gpu_devices(service):
            reset = services.get(name, {}).get("deploy")
            assert isinstance(reset, Tagged) and reset.tag == "!reset", f"{name}: the CPU override must `deploy: !reset`"


def test_cpu_override_is_consistent(compose, cpu_override, monkeypatch):
    from reward_server.config import load_settings

    services = cpu_override["services"]
    reward = services["reward"]
    args = with_defaults(reward["command"])
    flags = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    assert flags <= cli_flags(REPO / "reward_server" / "cli.py"), f"reward-server has no flag(s) {sorted(flags - cli_flags(REPO / 'reward_server' / 'cli.py'))}"
    assert "--random-weights" in flags, "without weights a CPU service can only run on random weights"
    if flag_value(args, "--config"):
        load_settings(REPO / flag_value(args, "--config"))
    merged_reward_env = {**service_env(compose["services"]["reward"]), **environment(reward)}
    assert set(environment(reward)) <= reward_env_names()
    assert reward_settings_from_env({k: v for k, v in merged_reward_env.items() if k.startswith("REWARD_SERVER_")}, monkeypatch).device == "cpu"
    assert set(environment(services["judge"])) <= judge_env_names()
    vllm_args = with_defaults(services["vllm"]["command"])
    assert environment(services["judge"])["JUDGE_SERVER_MODEL"] == flag_value(vllm_args, "--model")
    assert int(flag_value(vllm_args, "--port") or VLLM_DEFAULT_PORT) == container_ports(compose["services"]["vllm"])[0]
    assert json.loads(flag_value(vllm_args, "--limit-mm-per-prompt"))["image"] >= len(IMAGE_FIELDS)


def test_secrets_example_names_token_settings():
    names = set(env_file_names(SECRETS_EXAMPLE))
    assert names and names <= reward_env_names() | judge_env_names()
    assert all(n.endswith("_TOKEN") for n in names)
    assert "secrets.env" in (REPO / "deploy" / ".gitignore").read_text().split()


def test_published_ports_bind_loopback_by_default(compose):
    for name, service in compose["services"].items():
        for entry in with_defaults(service.get("ports", [])):
            parts = str(entry).split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name}: {entry} is published beyond loopback by default"
    assert compose["services"]["vllm"]["ports"][0].startswith("127.0.0.1:"), "vLLM has no API key: loopback, always"
    readme = (REPO / "deploy" / "README.md").read_text()
    assert "REWARD_BIND" in readme and "JUDGE_BIND" in readme, "deploy/README.md says how to open the ports"
