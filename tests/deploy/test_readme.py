"""The README keeps its two commands on top and points at files that exist."""

from __future__ import annotations

import re

from deploy_files import REPO

README = (REPO / "README.md").read_text()


def test_two_commands_open_the_readme():
    sections = README.split("\n## ")
    assert sections[1].startswith("Two commands")
    assert "bash scripts/demo.sh" in sections[1] and "bash scripts/test.sh" in sections[1]
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert (REPO / script).is_file()


def test_relative_links_and_named_files_exist():
    links = re.findall(r"\]\(([^)#:]+)\)", README)
    named = re.findall(r"`((?:deploy|docs|configs|scripts)/[\w./-]+\.(?:md|yaml|yml|py|sh|Dockerfile))`", README)
    assert {"docs/configuration.md", "docs/benchmarks.md", "deploy/README.md"} <= set(links)
    for path in set(links) | set(named):
        assert (REPO / path).exists(), f"README names {path}, which does not exist"


def test_console_scripts_shown_are_real():
    from deploy_files import console_scripts

    shown = set(re.findall(r"\.venv/bin/([\w-]+)", README)) - {"python"}
    assert shown and shown <= set(console_scripts()), f"not console scripts: {shown - set(console_scripts())}"


def test_config_overrides_shown_in_the_docs_are_valid():
    from trainer.config import load_config

    for doc in (REPO / "README.md", REPO / "deploy" / "README.md"):
        code = "\n".join(re.findall(r"```\w*\n(.*?)```", doc.read_text(), flags=re.S))
        overrides = re.findall(r"--set ([\w.]+=\S+)", code)
        assert overrides, f"{doc.name} shows no --set"
        load_config(REPO / "configs" / "paper-5task.yaml", overrides)  # unknown keys or bad values raise
        for module in re.findall(r"python -m (trainer\.\w+)", code):
            assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"{doc.name}: no module {module}"
