"""What the deployment files say, and what the code accepts, for the consistency tests.

Everything is derived from the code (settings models, FastAPI route tables, argparse parsers,
pyproject's console scripts), never restated here, so a rename on either side fails a test.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_CPU = REPO / "deploy" / "compose.cpu.yaml"
SECRETS_EXAMPLE = REPO / "deploy" / "secrets.env.example"
K8S_SERVICES = REPO / "deploy" / "k8s" / "services.yaml"
K8S_STORAGE = REPO / "deploy" / "k8s" / "storage.yaml"
RAYCLUSTER = REPO / "deploy" / "kuberay" / "raycluster.yaml"
RAYJOB = REPO / "deploy" / "kuberay" / "rayjob-paper-5task.yaml"
SERVICES_DOCKERFILE = REPO / "deploy" / "services.Dockerfile"
TRAINER_DOCKERFILE = REPO / "deploy" / "trainer.Dockerfile"
DOCKERFILES = (SERVICES_DOCKERFILE, TRAINER_DOCKERFILE)

# vLLM's OpenAI-compatible server (not importable in the project's venv): its probe routes.
VLLM_HEALTH_PATHS = {"/health", "/v1/models"}
VLLM_DEFAULT_PORT = 8000
# Variables of Python, pip and Hugging Face libraries that images may set besides the settings.
RUNTIME_ENV = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "HF_HUB_OFFLINE"}


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags (!reset, !override), kept as Tagged values."""


class Tagged:
    def __init__(self, tag: str, value):
        self.tag, self.value = tag, value


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return Tagged(node.tag, value)


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(_tag, _tagged)


def load_compose(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


def load_manifests(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def with_defaults(value):
    """A Compose value as it is with none of the variables set: `${X:-d}` -> d; `${X}` is an error."""
    if isinstance(value, list):
        return [with_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: with_defaults(v) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m["op"] in (":-", "-"):
            return m["arg"]
        raise AssertionError(f"{m[0]}: every variable needs a default (`${{{m['name']}:-...}}`)")

    return _INTERPOLATION.sub(sub, value).replace("$$", "$")


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(with_defaults(v)) for k, v in env.items()}


def env_file_names(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def container_ports(service: dict) -> list[int]:
    """Container side of Compose `ports` entries ("host:container" or "container")."""
    return [int(str(with_defaults(p)).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])]


def healthcheck_url(service: dict) -> tuple[int, str]:
    """(port, path) of the URL a Compose health check fetches."""
    test = service["healthcheck"]["test"]
    text = " ".join(test) if isinstance(test, list) else test
    urls = re.findall(r"https?://[^\s'\"]+", text)
    assert len(urls) == 1, f"health check should fetch exactly one URL: {text}"
    parts = urlsplit(urls[0])
    assert parts.hostname in ("localhost", "127.0.0.1"), f"health check must probe the container itself: {urls[0]}"
    return parts.port, parts.path


def flag_value(args: list[str], flag: str) -> str | None:
    """Value of `--flag VALUE` or `--flag=VALUE` in an argument list."""
    for i, a in enumerate(args):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def gpu_devices(service: dict) -> list[dict]:
    deploy = service.get("deploy")
    if not isinstance(deploy, dict):
        return []
    devices = deploy.get("resources", {}).get("reservations", {}).get("devices", [])
    return [d for d in devices if d.get("driver") == "nvidia" or "gpu" in d.get("capabilities", [])]


@cache
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def console_scripts() -> dict[str, str]:
    return pyproject()["project"]["scripts"]


class Stage:
    """One stage of a multi-stage Dockerfile, with the ENV, EXPOSE, ENTRYPOINT, COPY and RUN it ends with
    (a stage built FROM an earlier one holds that one's too)."""

    def __init__(self, name: str | None, base: str):
        self.name, self.base = name, base
        self.env: dict[str, str] = {}
        self.expose: set[int] = set()
        self.entrypoint: list[str] | None = None
        self.workdir: str | None = None
        self.copies: list[list[str]] = []
        self.runs: list[str] = []
        self.args: dict[str, str] = {}


def dockerfile_stages(path: Path) -> dict[str | None, Stage]:
    """Stages by name (unnamed: None); a stage built FROM an earlier one inherits its ENV/EXPOSE/ENTRYPOINT."""
    parser = DockerfileParser(path=str(path))
    global_args: dict[str, str] = {}
    stages: dict[str | None, Stage] = {}
    current: Stage | None = None
    for ins in parser.structure:
        kind, value = ins["instruction"], ins["value"]
        if kind == "ARG":
            name, eq, default = value.partition("=")
            if current is None:
                global_args[name] = default
            else:  # a bare ARG in a stage re-declares the global one with its default
                current.args[name] = default if eq else global_args.get(name, "")
        elif kind == "FROM":
            words = value.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            current = Stage(name, base)
            parent = stages.get(base)
            if parent is not None:
                current.env, current.expose = dict(parent.env), set(parent.expose)
                current.entrypoint, current.workdir = parent.entrypoint, parent.workdir
                current.copies, current.runs = list(parent.copies), list(parent.runs)
            current.args = dict(global_args)
            stages[name] = current
        elif kind == "ENV":
            current.env.update(_env_pairs(value))
        elif kind == "EXPOSE":
            current.expose |= {int(p.split("/")[0]) for p in value.split()}
        elif kind == "ENTRYPOINT":
            current.entrypoint = yaml.safe_load(value) if value.lstrip().startswith("[") else shlex.split(value)
        elif kind == "WORKDIR":
            current.workdir = value
        elif kind == "RUN":
            current.runs.append(value)
        elif kind == "COPY":
            current.copies.append([w for w in shlex.split(value) if not w.startswith("--")])
    return stages


def _env_pairs(value: str) -> dict[str, str]:
    words = shlex.split(value)
    if len(words) >= 2 and "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def reward_env_names() -> set[str]:
    from reward_server.config import RewardSettings

    prefix = RewardSettings.model_config["env_prefix"]
    return {prefix + name.upper() for name in RewardSettings.model_fields}


def judge_env_names() -> set[str]:
    from judge_server.settings import ENV_PREFIX, JudgeSettings

    return {ENV_PREFIX + name.upper() for name in JudgeSettings.model_fields}


def reward_settings_from_env(env: dict[str, str], monkeypatch):
    """RewardSettings as the service builds them from these environment variables alone."""
    from reward_server.config import RewardSettings, load_settings

    prefix = RewardSettings.model_config["env_prefix"]
    for name in [n for n in os.environ if n.startswith(prefix)]:
        monkeypatch.delenv(name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_settings()


def judge_settings_from_env(env: dict[str, str]):
    from judge_server.settings import load_settings

    return load_settings(environ=env)


def _calls(path: Path, method: str):
    """Calls `<anything>.method(...)` in a module's source."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
            yield node


def get_routes(module: Path) -> set[str]:
    """Paths registered with `@app.get("/path")` in a FastAPI module.

    Read from the source: importing the reward app pulls in open_clip and lpips (~15 s of CPU),
    more than this whole test module may take.
    """
    return {c.args[0].value for c in _calls(module, "get") if c.args and isinstance(c.args[0], ast.Constant)
            and isinstance(c.args[0].value, str) and c.args[0].value.startswith("/")}


def cli_flags(module: Path) -> set[str]:
    """Option strings given to argparse's add_argument in a module's source."""
    return {a.value for c in _calls(module, "add_argument") for a in c.args
            if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")}


def reward_get_routes() -> set[str]:
    return get_routes(REPO / "reward_server" / "app.py")


def judge_get_routes() -> set[str]:
    return get_routes(REPO / "judge_server" / "app.py")


def service_kind(entrypoint: list[str]) -> str:
    """'reward' or 'judge' from an image's entry point (the console script it runs)."""
    target = console_scripts()[entrypoint[0]]
    return target.split(".", 1)[0].removesuffix("_server")
