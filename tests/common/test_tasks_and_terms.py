"""The task vocabulary has one owner, and every per-task or per-term table agrees with it."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest
import torch

from irpo_common.reward_spec import GEN_TERMS, RewardWeights
from irpo_common.tasks import TASKS, Task, check_covers_tasks


def test_every_task_literal_is_the_shared_one():
    from judge_server import schemas as judge_schemas
    from reward_server import schemas as reward_schemas
    from trainer import config

    assert typing.get_args(Task) == TASKS
    assert reward_schemas.ItemOptions.model_fields["task"].annotation == Task | None
    assert judge_schemas.JudgeOptions.model_fields["task"].annotation == Task | None
    assert config.DataConfig.model_fields["tasks"].annotation == list[Task]


def test_task_tables_cover_exactly_the_tasks():
    from judge_server.parsing import _TASK_WORDS
    from judge_server.prompts import TASK_NAMES
    from reward_server.metrics import task_terms
    from reward_server.terms import NO_TASK_TERM, TASK_NEEDS

    for table in (_TASK_WORDS, TASK_NAMES):
        assert set(table) == set(TASKS)
    for table in (TASK_NEEDS, task_terms(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))):
        assert set(table) == set(TASKS) - set(NO_TASK_TERM)
    with pytest.raises(RuntimeError, match="differ from the tasks"):
        check_covers_tasks({"denoise": 1}, "a table")


def test_the_term_table_holds_each_generic_term_once():
    from reward_server.terms import TERMS

    assert sorted(t.name for t in TERMS) == sorted(GEN_TERMS)
    assert set(GEN_TERMS) | {"gen", "judge", "task"} == set(RewardWeights.model_fields)


def test_which_terms_are_present_follows_the_images_given():
    from reward_server.config import RewardSettings
    from reward_server.terms import present_terms

    st = RewardSettings()

    present, skipped = present_terms(frozenset(), (64, 64), "derain", judge=False, settings=st)
    assert sorted(present) == ["aesthetic", "clip_iqa", "task"]  # BRISQUE needs 96 px by default (issue 23's size study)
    assert skipped["brisque"] == "BRISQUE needs a side of at least 96 px, got 64x64"
    assert skipped["psnr"] == "no reference given" and "judge" in skipped
    assert skipped["niqe"].startswith("NIQE needs a side of at least 384 px")  # too small, whatever is given
    present, skipped = present_terms(frozenset({"reference"}), (96, 192), "dehaze", judge=True, settings=st)
    assert set(present) == set(GEN_TERMS) - {"niqe", "piqe", "hps"} | {"task", "judge"} and set(skipped) == {"niqe", "piqe", "hps"}
    present, skipped = present_terms(frozenset({"reference"}), (384, 384), "dehaze", judge=True, settings=st)
    assert set(present) == set(GEN_TERMS) - {"hps"} | {"task", "judge"} and list(skipped) == ["hps"]  # no hps_model configured
    _, skipped = present_terms(frozenset(), (64, 64), "dehaze", judge=True, settings=st)
    assert skipped["task"].startswith("no reference given")
    present, skipped = present_terms(frozenset({"reference"}), (96, 192), "face", judge=False, settings=st)
    assert "task" not in present and skipped["task"].startswith("no task-aware term exists for face")


def test_the_judge_service_imports_neither_torch_nor_the_other_packages():
    code = ("import sys, judge_server.app, judge_server.cli, judge_server.client; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'trainer', 'reward_server', 'devtools'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
