"""docs/configuration.md is generated from the settings models and is up to date with them."""

from __future__ import annotations

import importlib.util

from deploy_files import REPO, judge_env_names, reward_env_names

from trainer.config import TrainConfig


def generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", REPO / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_up_to_date():
    gen = generator()
    assert gen.OUTPUT.read_text() == gen.render(), "docs/configuration.md is stale: run .venv/bin/python scripts/gen_config_docs.py"


def test_reference_names_every_setting():
    text = (REPO / "docs" / "configuration.md").read_text()
    for name in reward_env_names() | judge_env_names():
        assert f"`{name}`" in text
    for name, field in TrainConfig.model_fields.items():
        keys = getattr(field.annotation, "model_fields", None)
        dotted = [f"{name}.{key}" for key in keys] if keys else [name]
        for key in dotted:
            assert f"| `{key}` |" in text, f"trainer setting {key} is missing"


def test_help_texts_reach_the_reference():
    text = (REPO / "docs" / "configuration.md").read_text()
    described = [f.description for sec in TrainConfig.model_fields.values()
                 for f in getattr(sec.annotation, "model_fields", {}).values() if f.description]
    assert described and all(d.replace("|", "\\|") in text for d in described)
