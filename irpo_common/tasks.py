"""The restoration tasks: the one list every Literal, prompt table and task-term table derives from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

Task = Literal["denoise", "derain", "dehaze", "deblur", "lowlight", "face", "sr"]  # face: blind face restoration (LRPO); sr: 4x super-resolution
TASKS: tuple[str, ...] = get_args(Task)
ALL_IN_ONE_TASKS: tuple[str, ...] = ("denoise", "derain", "dehaze", "deblur", "lowlight")  # IRPO's five, the default task list
# How many times smaller than the restored image a task's degraded input is (1 for every task not named):
# 'sr' restores the ground truth downscaled 4x (the x4 upscaler's and LDM super-resolution's factor).
INPUT_SCALE: dict[str, int] = {"sr": 4}


def input_scale(task: str) -> int:
    """The restored image's side over the degraded input's for `task`."""
    return INPUT_SCALE.get(task, 1)


def check_covers_tasks(table: Mapping[str, object], what: str) -> None:
    """Raise at import time when a per-task table misses a task or names an unknown one."""
    if set(table) != set(TASKS):
        raise RuntimeError(
            f"{what}: keys {sorted(table)} differ from the tasks {list(TASKS)} (irpo_common.tasks)"
        )
