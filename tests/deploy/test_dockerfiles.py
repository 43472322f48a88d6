"""The Dockerfiles parse, run real console scripts, copy what exists and match the pinned versions."""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
from importlib.metadata import version

import pytest
from deploy_files import (
    DOCKERFILES,
    REPO,
    RUNTIME_ENV,
    SERVICES_DOCKERFILE,
    TRAINER_DOCKERFILE,
    console_scripts,
    dockerfile_stages,
    judge_env_names,
    pyproject,
    reward_env_names,
    service_kind,
)

PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"


def test_service_images_run_console_scripts():
    stages = dockerfile_stages(SERVICES_DOCKERFILE)
    kinds = {}
    for name, stage in stages.items():
        if stage.entrypoint is None:
            continue
        script = stage.entrypoint[0]
        assert script in console_scripts(), f"stage {name}: ENTRYPOINT {script!r} is not a console script of pyproject.toml"
        kinds[name] = service_kind(stage.entrypoint)
    assert kinds == {"reward": "reward", "judge": "judge"}


def test_console_script_targets_exist():
    """Each console script named by an image resolves to a function in the source tree."""
    for stage in dockerfile_stages(SERVICES_DOCKERFILE).values():
        if stage.entrypoint is None:
            continue
        module, _, func = console_scripts()[stage.entrypoint[0]].partition(":")
        source = REPO / (module.replace(".", "/") + ".py")
        assert source.is_file(), f"{module}: no such module"
        defined = {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert func in defined, f"{module} defines no {func}()"


def test_service_image_environment_is_settings():
    known = {"reward": reward_env_names(), "judge": judge_env_names()}
    for name, stage in dockerfile_stages(SERVICES_DOCKERFILE).items():
        kind = service_kind(stage.entrypoint) if stage.entrypoint else None
        allowed = RUNTIME_ENV | (known[kind] if kind else set())
        assert set(stage.env) <= allowed, f"stage {name}: unknown variables {sorted(set(stage.env) - allowed)}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_sources_exist_and_are_not_ignored(dockerfile):
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text().split("\n")
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    copies = [c for stage in dockerfile_stages(dockerfile).values() for c in stage.copies]
    assert copies, f"{dockerfile.name} copies nothing"
    for *sources, _dest in copies:
        for src in sources:
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src}: not in the repository"
            included = False
            for pat in patterns:  # last match wins, as in .dockerignore
                negated = pat.startswith("!")
                if fnmatch.fnmatch(src, pat.lstrip("!")) or pat == "**":
                    included = negated
            assert included, f"{dockerfile.name}: COPY {src} but its .dockerignore leaves {src} out of the context"


def test_services_base_matches_the_project_python():
    [base] = {s.base for s in dockerfile_stages(SERVICES_DOCKERFILE).values() if ":" in s.base}
    assert base == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    assert pyproject()["project"]["requires-python"] == f">={sys.version_info.major}.{sys.version_info.minor}"


def test_trainer_image_is_ray_gpu_of_the_installed_ray():
    [stage] = dockerfile_stages(TRAINER_DOCKERFILE).values()
    pinned = stage.args["RAY_VERSION"]
    assert pinned == version("ray"), f"trainer image pins Ray {pinned}, the project runs {version('ray')}"
    assert stage.base.replace("${RAY_VERSION}", pinned) == f"rayproject/ray:{pinned}-{PY_TAG}-gpu"


def _copied(stage) -> set[str]:
    return {src for *sources, _ in stage.copies for src in sources}


def _installed_requirements(stage) -> list[str]:
    """The project's requirements that the stage's `pip install .[extras]` pulls in (extras expanded)."""
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    [install] = [r for r in stage.runs if "pip install ." in r or 'pip install ".[' in r]
    todo = re.findall(r"\.\[([a-z,]+)\]", install)
    todo = [e for group in todo for e in group.split(",")]
    reqs, seen = list(project["dependencies"]), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in extras[extra]:
            nested = re.fullmatch(r"irpo\[([a-z,]+)\]", req)
            if nested:
                todo += nested.group(1).split(",")
            else:
                reqs.append(req)
    return reqs


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower() for r in reqs}


def test_the_trainer_image_copies_every_package():
    [stage] = dockerfile_stages(TRAINER_DOCKERFILE).values()
    for package in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in _copied(stage), f"trainer image: package {package} is not copied"
    assert {"torch", "ray"} <= _names(_installed_requirements(stage))


def test_each_service_image_holds_the_ground_floor_and_its_own_service_only():
    stages = dockerfile_stages(SERVICES_DOCKERFILE)
    packages = {"irpo_common", "trainer", "reward_server", "judge_server"}
    assert _copied(stages["reward"]) & packages == {"irpo_common", "reward_server"}
    assert _copied(stages["judge"]) & packages == {"irpo_common", "judge_server"}
    assert "torch" in _names(_installed_requirements(stages["reward"]))


def test_the_judge_image_installs_no_torch_and_no_trainer():
    judge = dockerfile_stages(SERVICES_DOCKERFILE)["judge"]
    assert not _copied(judge) & {"trainer", "reward_server", "devtools", "tests", "benchmarks"}
    names = _names(_installed_requirements(judge))
    assert not names & {"torch", "torchvision", "ray", "lpips", "open_clip_torch", "kornia"}, names
