"""Checks that stop a run with a clear message before Ray or any actor starts.

The learner and the rollout actors build the configured family's policy from its starting weights
(model.checkpoint or policy.diffusion.pretrained) and, on resume, load the checkpoint's states; a bad file found there ends in an actor traceback seconds into the run. So the
driver does the same loads once, on the CPU, first.
"""

from __future__ import annotations

import torch

from trainer.checkpointing import Checkpoint, CheckpointError, resolve_resume
from trainer.config import TrainConfig
from trainer.policies import build_policy
from trainer.storage import storage_path


class PreflightError(RuntimeError):
    """A configured input of the run is unusable; the message names it and what to do."""


def check_storage(cfg: TrainConfig) -> None:
    """checkpoint.dir and logging.dir take a write (bucket, credentials, permissions); with TensorBoard on,
    logging.dir also takes an append, as TensorBoard's event writer reopens its file in append mode."""
    folders = (("checkpoint.dir", cfg.checkpoint.dir, "wb"), ("logging.dir", cfg.logging.dir, "ab" if cfg.logging.tensorboard else "wb"))
    for field, folder, mode in folders:
        folder = storage_path(folder)
        probe = folder / ".irpo-write-check"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with probe.open(mode) as f:
                f.write(b"ok")
            probe.unlink()
        except Exception as exc:  # each backend raises its own types (PermissionError, NotImplementedError, botocore's ...)
            hint = "; TensorBoard needs a backend that appends: set logging.tensorboard=false there" if mode == "ab" else ""
            raise PreflightError(f"{field} {folder}: cannot {'append to' if mode == 'ab' else 'write'} a file there ({type(exc).__name__}: {exc}){hint}") from None


def check_policy_and_resume(cfg: TrainConfig, resume: str, num_images: int) -> Checkpoint | None:
    """Load the starting weights into the configured policy and verify the resume checkpoint against it.

    Returns the verified checkpoint to resume from (None = fresh run).
    """
    ckpt = resolve_resume(cfg.checkpoint.dir, resume)
    section = cfg.policy_section
    policy = None
    if section.weights is not None:
        try:
            policy = build_policy(section)
        except ValueError as exc:  # WeightsError, or a setting the model refuses (policy.diffusion.output_scale)
            raise PreflightError(f"{cfg.policy_weights_field}: {exc}") from None
    if policy is None:  # random init: the architecture alone, on the meta device (no memory); it checks its settings
        try:
            with torch.device("meta"):
                policy = build_policy(section, load_weights=False)
        except ValueError as exc:
            raise PreflightError(f"{cfg.policy_weights_field.rsplit('.', 1)[0]}: {exc}") from None
    if ckpt is None:
        return None
    # (a pipeline folder cannot be built on the meta device: from_pretrained refuses it, so the policy built above
    # serves; assign=True then swaps its tensors for the checkpoint's without a copy)
    if ckpt.extra.get("num_images") != num_images:
        raise CheckpointError(f"{ckpt.path} was written for {ckpt.extra.get('num_images')} training images, the data now has {num_images}: same subset needed to resume")
    # the reference loads into what the learner's reference is: a copy of the policy, or the policy's own
    # shared_reference() (LoRA: the adapters-off base, whose checkpointed state is empty)
    shared = getattr(policy, "shared_reference", lambda: None)()
    checks = {"policy": (policy, ckpt.learner["policy"]), "reference": (shared or policy, ckpt.learner["reference"])}
    checks.update({f"rollout weights v{v}": (policy, w) for v, w in ckpt.rollout_weights.items()})
    if (ckpt.learner["ema"] is None) != (not cfg.learner.ema_decay):
        raise CheckpointError(f"{ckpt.path} {'has no' if cfg.learner.ema_decay else 'has an'} EMA of the weights (ema.safetensors) but learner.ema_decay is "
                              f"{cfg.learner.ema_decay}: resume with the learner.ema_decay it was written with")
    if ckpt.learner["ema"] is not None:
        checks["EMA weights"] = (policy, ckpt.learner["ema"])
    for part, (target, state) in checks.items():
        try:
            if target is shared:
                target.load_state_dict(state)
            else:
                target.load_state_dict(state, assign=True)
        except (RuntimeError, ValueError) as exc:
            detail = (str(exc).splitlines()[1:2] or [str(exc)])[0].strip()
            raise CheckpointError(f"{ckpt.path}: its {part} do not fit the configured model ({detail}); resume with the policy config it was written with") from None
    return ckpt
