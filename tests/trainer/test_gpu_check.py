"""scripts/gpu_check.sh --dry-run: every stage runs on the CPU at toy size, and the output says that
no GPU was used instead of printing GPU numbers."""

import os
import subprocess

import pytest

from tests.trainer.run_fixtures import REPO

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def test_the_dry_run_goes_through_every_stage_and_claims_no_gpu(tmp_path):
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--steps", "2", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=870, env={**os.environ, "GPU_CHECK_TIMEOUT_S": "840"})
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("[gpu-check]")]
    stages = [line.split(":")[0].removeprefix("[gpu-check] ") for line in lines]
    assert stages == ["device", "batched rollout", "reward", "train", "resume", "memory", "judge", "done"]
    assert "DRY RUN on the CPU: nothing below ran on a GPU" in lines[0]
    assert "[CPU, not the target]" in lines[1] and "RANDOM weights" in lines[2]
    assert "largest weight difference to the uninterrupted run 0" in out  # the CPU resume is bit-exact
    assert "peak GPU memory n/a (dry run)" in out and "DRY RUN: no GPU was used" in lines[-1]
    assert "weight_sync" in out and "rollout_wait" in out  # the per-stage table is printed
    assert "weight sync: collective broadcast on" in out  # the dry run sends the weights over gloo
