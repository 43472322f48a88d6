"""Checkpoints of a GRPO run: weights as safetensors, the rest (optimiser, tracker, RNG, step) with torch.save.

policy.safetensors holds the live weights; with learner.ema_decay, ema.safetensors beside it holds the same
state dict with the EMA of the trainable parameters swapped in: the weights to evaluate or export (--ema).

A checkpoint is a folder step-NNNNNNNN under checkpoint.dir, a local path or an fsspec URL
(trainer/storage.py). meta.json lists every file with its size and SHA-256, so a checkpoint damaged
later (disk, copy, hand edits) is found by `load_checkpoint` before any work, and `--resume auto`
falls back to the newest intact one and names the broken ones. A run killed while saving never
leaves a checkpoint that looks complete: on a local filesystem the folder is written under a
temporary name and renamed when complete; an object store cannot rename a folder, so there meta.json
is written last, as the commit marker, and a folder without it reads as incomplete.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from safetensors.torch import load, save
from upath import UPath

from trainer.storage import is_local, remove_tree, storage_path

_NAME = re.compile(r"^step-(\d{8})$")
META = "meta.json"
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not belong to this run's config."""


@dataclass
class Checkpoint:
    step: int  # learner steps completed; the run continues with this step
    learner: dict  # Learner.state(): policy, reference, ema (None without one), optimizer, tracker, version, torch_rng
    rollout_weights: dict[int, dict[str, torch.Tensor]]  # version -> weights the in-flight rollouts sampled with
    extra: dict  # driver state: data position, fault counters, config
    path: UPath


def _weights(state: dict[str, torch.Tensor]) -> bytes:
    return save({k: v.contiguous() for k, v in state.items()})


def save_checkpoint(root, step: int, learner: dict, rollout_weights: dict[int, dict[str, torch.Tensor]], extra: dict, keep: int) -> UPath:
    root = storage_path(root)
    final = root / f"step-{step:08d}"
    atomic = is_local(root)  # else meta.json, written last, is the commit marker
    stage = root / f".tmp-step-{step:08d}" if atomic else final
    remove_tree(stage, first=META)  # an earlier attempt at this step (on an object store: the step itself)
    stage.mkdir(parents=True, exist_ok=True)
    blobs = {"policy.safetensors": _weights(learner["policy"]), "reference.safetensors": _weights(learner["reference"])}
    if learner.get("ema") is not None:
        blobs["ema.safetensors"] = _weights(learner["ema"])
    for version, state in rollout_weights.items():
        blobs[f"rollout-v{version:08d}.safetensors"] = _weights(state)
    buffer = io.BytesIO()
    torch.save({"learner": {k: v for k, v in learner.items() if k not in ("policy", "reference", "ema")}, "extra": extra}, buffer)
    blobs["trainer_state.pt"] = buffer.getvalue()
    files = {}
    for name, data in sorted(blobs.items()):
        (stage / name).write_bytes(data)
        files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (stage / META).write_text(json.dumps({"step": step, "version": learner["version"], "rollout_versions": sorted(rollout_weights), "files": files}))
    if atomic:
        remove_tree(final)
        os.replace(stage.path, final.path)
    _prune(root, keep)
    return final


def _prune(root: UPath, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints (with meta.json) and drop every folder older than them,
    complete or not; a folder without meta.json counts towards nothing (a write cut short, or damage)."""
    folders = list_checkpoints(root)
    complete = [p.name for p in folders if (p / META).exists()]
    if len(complete) <= keep:
        return
    for path in folders:
        if path.name < complete[-keep]:
            remove_tree(path, first=META)


class CheckpointWriter:
    """Writes checkpoints in a background thread, one at a time, so the driver's step loop does not
    wait for the disk. A failed write raises at the next submit or at close, which stops the run."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._last: Future | None = None

    def submit(self, write: Callable[[], UPath]) -> None:
        self.wait()
        self._last = self._pool.submit(write)

    def wait(self) -> UPath | None:
        """The path of the last checkpoint written (None when none was submitted)."""
        return None if self._last is None else self._last.result()

    def close(self) -> UPath | None:
        try:
            return self.wait()
        finally:
            self._pool.shutdown()


def list_checkpoints(root) -> list[UPath]:
    """Checkpoint folders (step-NNNNNNNN) under root, oldest first, intact or not; load_checkpoint tells which."""
    root = storage_path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if _NAME.match(p.name) and p.is_dir()), key=lambda p: p.name)


def _read_meta(path: UPath) -> dict:
    try:
        meta = json.loads((path / META).read_text())
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


def _read_files(path: UPath, meta: dict) -> dict[str, bytes]:
    """Every file meta.json lists, checked against its size and hash (checkpoints from before the list
    skip the check); files it does not list are read unchecked."""
    listed = meta.get("files", {})
    names = ["trainer_state.pt", "policy.safetensors", "reference.safetensors", *(f"rollout-v{v:08d}.safetensors" for v in meta["rollout_versions"])]
    blobs = {}
    for name in dict.fromkeys([*listed, *names]):
        want = listed.get(name)
        try:
            data = (path / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise CheckpointError(f"{path}: {name} is missing") from None
        if name in listed and (not isinstance(want, dict) or len(data) != want.get("bytes") or hashlib.sha256(data).hexdigest() != want.get("sha256")):
            raise CheckpointError(f"{path}: {name} is damaged (size or SHA-256 differs from meta.json)")
        blobs[name] = data
    return blobs


def load_checkpoint(path) -> Checkpoint:
    """Read and verify a whole checkpoint; any damage raises CheckpointError naming the file."""
    path = storage_path(path)
    meta = _read_meta(path)
    blobs = _read_files(path, meta)
    try:
        saved = torch.load(io.BytesIO(blobs["trainer_state.pt"]), map_location="cpu", weights_only=True)
        learner = dict(saved["learner"])
        learner["policy"] = load(blobs["policy.safetensors"])
        learner["reference"] = load(blobs["reference.safetensors"])
        learner["ema"] = load(blobs["ema.safetensors"]) if "ema.safetensors" in blobs else None
        rollout = {v: load(blobs[f"rollout-v{v:08d}.safetensors"]) for v in meta["rollout_versions"]}
        extra = saved["extra"]
    except Exception as exc:  # torch.load and safetensors raise many types for damaged files
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(extra, dict) or not {"version", "optimizer", "torch_rng"} <= set(learner):
        raise CheckpointError(f"{path}: trainer_state.pt lacks the learner or driver state")
    return Checkpoint(meta["step"], learner, rollout, extra, path)


def resolve_resume(root, resume: str) -> Checkpoint | None:
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
        try:
            path = storage_path(resume)
        except ValueError as exc:
            raise CheckpointError(f"--resume {exc}") from None
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
