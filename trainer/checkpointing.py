"""Checkpoints of a GRPO run: weights as safetensors, the rest (optimiser, tracker, RNG, step) with torch.save.

A checkpoint is a folder step-NNNNNNNN written under a temporary name and renamed when complete,
so a run killed while saving leaves the previous checkpoint intact and never a half-written one.
meta.json lists every file with its size and SHA-256, so a checkpoint damaged later (disk, copy,
hand edits) is found by `load_checkpoint` before any work, and `--resume auto` falls back to the
newest intact one and names the broken ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_NAME = re.compile(r"^step-(\d{8})$")
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not belong to this run's config."""


@dataclass
class Checkpoint:
    step: int  # learner steps completed; the run continues with this step
    learner: dict  # Learner.state(): policy, reference, optimizer, tracker, version, torch_rng
    rollout_weights: dict[int, dict[str, torch.Tensor]]  # version -> weights the in-flight rollouts sampled with
    extra: dict  # driver state: data position, fault counters, config
    path: Path


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
    files = {f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)} for f in sorted(tmp.iterdir())}
    (tmp / "meta.json").write_text(json.dumps({"step": step, "version": learner["version"], "rollout_versions": sorted(rollout_weights), "files": files}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old)
    return final


class CheckpointWriter:
    """Writes checkpoints in a background thread, one at a time, so the driver's step loop does not
    wait for the disk. A failed write raises at the next submit or at close, which stops the run."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._last: Future | None = None

    def submit(self, write: Callable[[], Path]) -> None:
        self.wait()
        self._last = self._pool.submit(write)

    def wait(self) -> Path | None:
        """The path of the last checkpoint written (None when none was submitted)."""
        return None if self._last is None else self._last.result()

    def close(self) -> Path | None:
        try:
            return self.wait()
        finally:
            self._pool.shutdown()


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders (step-NNNNNNNN) under root, oldest first, intact or not; load_checkpoint tells which."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if _NAME.match(p.name) and p.is_dir()), key=lambda p: p.name)


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a complete checkpoint (no meta.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: meta.json is unreadable ({exc})") from None
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("step"), int)
        and isinstance(meta.get("rollout_versions"), list)
        and all(isinstance(v, int) for v in meta["rollout_versions"])
        and isinstance(meta.get("files", {}), dict)
    )
    if not ok:
        raise CheckpointError(f"{path}: meta.json does not describe a checkpoint (step, rollout_versions, files)")
    named = _NAME.match(path.name)
    if named and int(named.group(1)) != meta["step"]:
        raise CheckpointError(f"{path}: meta.json says step {meta['step']}, the folder name another")
    return meta


def _check_files(path: Path, meta: dict) -> None:
    """Every file meta.json lists is there with its size and hash (checkpoints from before the list skip this)."""
    for name, want in meta.get("files", {}).items():
        f = path / name
        if not isinstance(want, dict) or not f.is_file():
            raise CheckpointError(f"{path}: {name} is missing")
        if f.stat().st_size != want.get("bytes") or _sha256(f) != want.get("sha256"):
            raise CheckpointError(f"{path}: {name} is damaged (size or SHA-256 differs from meta.json)")


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and verify a whole checkpoint; any damage raises CheckpointError naming the file."""
    meta = _read_meta(path)
    _check_files(path, meta)
    try:
        saved = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
        learner = dict(saved["learner"])
        learner["policy"] = load_file(str(path / "policy.safetensors"))
        learner["reference"] = load_file(str(path / "reference.safetensors"))
        rollout = {v: load_file(str(path / f"rollout-v{v:08d}.safetensors")) for v in meta["rollout_versions"]}
        extra = saved["extra"]
    except Exception as exc:  # torch.load and safetensors raise many types for damaged files
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(extra, dict) or not {"version", "optimizer", "torch_rng"} <= set(learner):
        raise CheckpointError(f"{path}: trainer_state.pt lacks the learner or driver state")
    return Checkpoint(meta["step"], learner, rollout, extra, path)


def resolve_resume(root: Path, resume: str) -> Checkpoint | None:
    """--resume never|auto|PATH -> the verified checkpoint to start from (None = a fresh run).

    'auto' takes the newest intact checkpoint and logs each newer broken one by name; when folders
    exist but none is intact it stops rather than silently starting afresh.
    """
    existing = list_checkpoints(root)
    if resume == "never":
        if existing:
            raise CheckpointError(f"{root} already holds checkpoints (latest {existing[-1].name}); pass --resume auto to continue, or set checkpoint.dir to a new folder")
        return None
    if resume != "auto":
        path = Path(resume)
        if not path.is_dir():
            raise CheckpointError(f"--resume {resume}: no such checkpoint folder")
        return load_checkpoint(path)
    broken = []
    for path in reversed(existing):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:
            broken.append(str(exc))
            continue
        for reason in broken:
            log.warning("skipping a broken checkpoint: %s", reason)
        if broken:
            log.warning("resuming from %s, the newest intact checkpoint", path.name)
        return ckpt
    if broken:
        raise CheckpointError(f"{root} holds no intact checkpoint to resume from:\n  " + "\n  ".join(broken) + "\nmove the broken folders away, or set checkpoint.dir to a new folder for a fresh run")
    return None
