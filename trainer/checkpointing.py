"""Checkpoints of a GRPO run: weights as safetensors, the rest (optimiser, tracker, RNG, step) with torch.save.

A checkpoint is a folder step-NNNNNNNN written under a temporary name and renamed when complete,
so a run killed while saving leaves the previous checkpoint intact and never a half-written one.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_NAME = re.compile(r"^step-(\d{8})$")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not belong to this run's config."""


@dataclass
class Checkpoint:
    step: int  # learner steps completed; the run continues with this step
    learner: dict  # Learner.state(): policy, reference, optimizer, tracker, version, torch_rng
    rollout_weights: dict[int, dict[str, torch.Tensor]]  # version -> weights the in-flight rollouts sampled with
    extra: dict  # driver state: data position, fault counters, config


def _weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def save_checkpoint(root: Path, step: int, learner: dict, rollout_weights: dict[int, dict[str, torch.Tensor]], extra: dict, keep: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _weights(tmp / "policy.safetensors", learner["policy"])
    _weights(tmp / "reference.safetensors", learner["reference"])
    for version, state in rollout_weights.items():
        _weights(tmp / f"rollout-v{version:08d}.safetensors", state)
    rest = {k: v for k, v in learner.items() if k not in ("policy", "reference")}
    torch.save({"learner": rest, "extra": extra}, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, "version": learner["version"], "rollout_versions": sorted(rollout_weights)}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under root, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / "meta.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def load_checkpoint(path: Path) -> Checkpoint:
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (no meta.json)")
    meta = json.loads(meta_file.read_text())
    try:
        saved = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
        learner = dict(saved["learner"])
        learner["policy"] = load_file(str(path / "policy.safetensors"))
        learner["reference"] = load_file(str(path / "reference.safetensors"))
        rollout = {v: load_file(str(path / f"rollout-v{v:08d}.safetensors")) for v in meta["rollout_versions"]}
    except (OSError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    return Checkpoint(meta["step"], learner, rollout, saved["extra"])


def resolve_resume(root: Path, resume: str) -> Path | None:
    """--resume never|auto|PATH -> the checkpoint to start from (None = a fresh run)."""
    existing = list_checkpoints(root)
    if resume == "never":
        if existing:
            raise CheckpointError(f"{root} already holds checkpoints (latest {existing[-1].name}); pass --resume auto to continue, or set checkpoint.dir to a new folder")
        return None
    if resume == "auto":
        return existing[-1] if existing else None
    path = Path(resume)
    if not (path / "meta.json").is_file():
        raise CheckpointError(f"--resume {resume}: not a complete checkpoint folder")
    return path
