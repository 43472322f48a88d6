"""The restoration tasks: the one list every Literal, prompt table and task-term table derives from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

Task = Literal["denoise", "derain", "dehaze", "deblur", "lowlight", "face"]  # face: blind face restoration (LRPO)
TASKS: tuple[str, ...] = get_args(Task)
ALL_IN_ONE_TASKS: tuple[str, ...] = ("denoise", "derain", "dehaze", "deblur", "lowlight")  # IRPO's five, the default task list


def check_covers_tasks(table: Mapping[str, object], what: str) -> None:
    """Raise at import time when a per-task table misses a task or names an unknown one."""
    if set(table) != set(TASKS):
        raise RuntimeError(
            f"{what}: keys {sorted(table)} differ from the tasks {list(TASKS)} (irpo_common.tasks)"
        )
