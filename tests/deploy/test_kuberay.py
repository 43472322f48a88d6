"""KubeRay manifests and the Kubernetes services agree with the trainer, the services and the images."""

from __future__ import annotations

import json
import shlex
from importlib.metadata import version
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_files import (
    COMPOSE,
    K8S_SERVICES,
    K8S_STORAGE,
    RAYCLUSTER,
    RAYJOB,
    REPO,
    RUNTIME_ENV,
    TRAINER_DOCKERFILE,
    VLLM_HEALTH_PATHS,
    cli_flags,
    dockerfile_stages,
    flag_value,
    judge_env_names,
    judge_get_routes,
    judge_settings_from_env,
    load_compose,
    load_manifests,
    pyproject,
    reward_env_names,
    reward_get_routes,
    reward_settings_from_env,
)

from judge_server.judge import IMAGE_FIELDS
from trainer.config import load_config


@pytest.fixture(scope="module")
def rayjob() -> dict:
    [doc] = load_manifests(RAYJOB)
    return doc


@pytest.fixture(scope="module")
def raycluster() -> dict:
    [doc] = load_manifests(RAYCLUSTER)
    return doc


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    docs = load_manifests(K8S_SERVICES) + load_manifests(K8S_STORAGE)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def entrypoint_args(rayjob: dict) -> list[str]:
    words = shlex.split(rayjob["spec"]["entrypoint"])
    assert words[:2] == ["python", "trainer/run.py"], "the RayJob runs the trainer's run.py"
    return words[2:]


def overrides(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


def run_config(rayjob: dict):
    args = entrypoint_args(rayjob)
    return load_config(REPO / flag_value(args, "--config"), overrides(args))


def pods(spec: dict) -> list[tuple[dict, int]]:
    """(pod spec, replicas) of the head and every worker group of a RayCluster spec."""
    out = [(spec["headGroupSpec"]["template"]["spec"], 1)]
    out += [(g["template"]["spec"], g["replicas"]) for g in spec["workerGroupSpecs"]]
    return out


def test_api_versions_and_kinds(rayjob, raycluster):
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    assert (raycluster["apiVersion"], raycluster["kind"]) == ("ray.io/v1", "RayCluster")


def test_rayjob_cluster_equals_raycluster(rayjob, raycluster):
    assert rayjob["spec"]["rayClusterSpec"] == raycluster["spec"], "the two manifests drifted apart"


def test_entrypoint_flags_and_config_are_real(rayjob):
    args = entrypoint_args(rayjob)
    flags = {a for a in args if a.startswith("--")}
    known = cli_flags(REPO / "trainer" / "run.py")
    assert flags <= known, f"trainer/run.py has no flag(s) {sorted(flags - known)}"
    assert flag_value(args, "--config") == "configs/paper-5task.yaml"
    assert flag_value(args, "--resume") == "auto", "a retried job must resume from its checkpoints"
    run_config(rayjob)  # every --set key exists and every value validates


def test_cluster_has_the_gpus_the_run_asks_for(rayjob):
    cfg = run_config(rayjob)
    spec = rayjob["spec"]["rayClusterSpec"]
    head, *_ = pods(spec)
    assert "nvidia.com/gpu" not in head[0]["containers"][0]["resources"].get("limits", {}), "the driver needs no GPU"
    gpus = sum(int(p["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)) * n for p, n in pods(spec)[1:])
    wanted = cfg.rollout.num_workers * cfg.rollout.gpus_per_worker + cfg.learner.num_ranks * cfg.learner.gpus_per_rank
    assert wanted > 0, "the paper preset runs rollouts and learner on GPUs"
    assert gpus >= wanted, f"the cluster has {gpus} GPUs, the run asks for {wanted}"
    cpus = sum(float(p["containers"][0]["resources"]["limits"]["cpu"]) * n for p, n in pods(spec)[1:])
    wanted_cpus = cfg.rollout.num_workers * cfg.rollout.cpus_per_worker + cfg.learner.num_ranks * cfg.learner.cpus_per_rank
    assert cpus >= wanted_cpus, f"the GPU workers have {cpus} CPUs, the run asks for {wanted_cpus}"
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_pods_give_ray_a_shared_memory_volume_and_the_head_runs_no_actor(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"
    for pod, _ in pods(spec):
        shm = [m["name"] for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert shm, "Ray's object store needs more than the container's 64 MiB /dev/shm"
        [volume] = [v for v in pod["volumes"] if v["name"] == shm[0]]
        assert volume["emptyDir"]["medium"] == "Memory"
    for group in spec["workerGroupSpecs"]:
        assert group["template"]["spec"]["nodeSelector"], "GPU workers name the GPU type they were sized for"


def test_the_runs_actors_place_on_the_one_gpu_pods(rayjob):
    """First-fit of the learner and every rollout bundle onto the worker pods (Ray places each actor
    on one node): fractional GPUs must add up within a pod, not only across the cluster."""
    cfg = run_config(rayjob)
    free = [[float(p["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)), float(p["containers"][0]["resources"]["limits"]["cpu"])]
            for p, n in pods(rayjob["spec"]["rayClusterSpec"])[1:] for _ in range(n)]
    r, lc = cfg.rollout, cfg.learner
    for gpus, cpus in [(lc.gpus_per_rank, lc.cpus_per_rank)] * lc.num_ranks + [(r.gpus_per_worker, r.cpus_per_worker)] * r.num_workers:
        pod = next((f for f in free if f[0] >= gpus and f[1] >= cpus), None)
        assert pod is not None, f"an actor of {gpus} GPU / {cpus} CPU fits on no pod left: {free}"
        pod[0] -= gpus
        pod[1] -= cpus


def test_cluster_uses_the_trainer_image_and_ray_version(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == version("ray") == dockerfile_stages(TRAINER_DOCKERFILE)[None].args["RAY_VERSION"]
    images = {c["image"] for p, _ in pods(spec) for c in p["containers"]}
    assert images == {f"irpo-trainer:{pyproject()['project']['version']}"}
    runtime_env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == dockerfile_stages(TRAINER_DOCKERFILE)[None].workdir


def test_token_variables_and_shared_paths_exist_on_every_pod(rayjob, k8s):
    cfg = run_config(rayjob)
    spec = rayjob["spec"]["rayClusterSpec"]
    for pod, _ in pods(spec):
        container = pod["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        for token_env in (cfg.reward.token_env, cfg.judge.token_env):
            assert token_env in env, f"{container['name']}: {token_env} (the trainer's token_env) is not set"
            ref = env[token_env]["valueFrom"]["secretKeyRef"]
            assert not ref.get("optional"), "the trainer stops on an empty token: the secret is required"
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        for path in (cfg.data.root, cfg.model.checkpoint, cfg.mining.subset, cfg.checkpoint.dir, cfg.logging.dir):
            assert any(str(path).startswith(m + "/") for m in mounts), f"{container['name']}: {path} is on no mounted volume"
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        assert claims <= {name for kind, name in k8s if kind == "PersistentVolumeClaim"}
        shared = k8s[("PersistentVolumeClaim", next(iter(claims)))]
        assert "ReadWriteMany" in shared["spec"]["accessModes"], "head and workers mount the same volume"


def container_of(k8s, deployment: str) -> dict:
    [container] = k8s[("Deployment", deployment)]["spec"]["template"]["spec"]["containers"]
    return container


def literal_env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "set-from-secret") for e in container.get("env", [])}


def service_url_target(k8s, url: str) -> tuple[dict, int]:
    """The Deployment container behind an in-cluster URL, and the container port it reaches."""
    parts = urlsplit(url)
    service = k8s[("Service", parts.hostname)]
    [port] = [p for p in service["spec"]["ports"] if p["port"] == parts.port]
    deployments = [d for (kind, _), d in k8s.items() if kind == "Deployment"
                   and d["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()]
    [deployment] = deployments
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container, port["targetPort"]


def test_trainer_reaches_the_services_by_url(rayjob, k8s, monkeypatch):
    cfg = run_config(rayjob)
    compose = load_compose(COMPOSE)["services"]
    for url, kind, routes in ((cfg.reward.url, "reward", reward_get_routes()), (cfg.judge.url, "judge", judge_get_routes())):
        container, port = service_url_target(k8s, url)
        env = literal_env(container)
        assert set(env) <= (reward_env_names() if kind == "reward" else judge_env_names()) | RUNTIME_ENV
        settings = reward_settings_from_env(env, monkeypatch) if kind == "reward" else judge_settings_from_env(env)
        assert port == settings.port and {p["containerPort"] for p in container["ports"]} == {settings.port}
        assert container["image"] == compose[kind]["image"], f"{kind}: k8s and compose run different images"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in container:
                get = container[probe]["httpGet"]
                assert get["port"] == settings.port and get["path"] in routes, f"{kind} {probe}: {get}"
        assert "readinessProbe" in container


def test_judge_backend_is_the_vllm_deployment(k8s):
    judge = judge_settings_from_env(literal_env(container_of(k8s, "irpo-judge")))
    vllm, port = service_url_target(k8s, judge.backend_url.removesuffix("/v1"))
    assert judge.backend_url.endswith("/v1")
    args = vllm["args"]
    assert int(flag_value(args, "--port")) == port
    assert judge.model == (flag_value(args, "--served-model-name") or flag_value(args, "--model"))
    assert json.loads(flag_value(args, "--limit-mm-per-prompt"))["image"] >= len(IMAGE_FIELDS)
    assert vllm["readinessProbe"]["httpGet"]["path"] in VLLM_HEALTH_PATHS
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert container_of(k8s, "irpo-reward")["resources"]["limits"]["nvidia.com/gpu"] >= 1
