"""Export a GRPO checkpoint of the diffusion family as a diffusers folder, adapters merged.

    python -m trainer.export --checkpoint runs/grpo/checkpoints/step-00000100 --out runs/export/x4-grpo [--ema]

A pipeline policy (x4 upscaler, LDM-SR, ControlNet) gives a copy of its source pipeline folder with the
trained unet/ (and controlnet/): the matching diffusers pipeline loads it with from_pretrained, and
`policy.diffusion.pretrained: FOLDER` (without lora) continues from it. The run's config comes from the
checkpoint itself. --ema exports the EMA of the trained weights (learner.ema_decay; the checkpoint's
ema.safetensors) instead of the live ones.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer.checkpointing import CheckpointError, load_checkpoint
from trainer.config import TrainConfig
from trainer.policies import WeightsError, build_policy


def export(checkpoint: Path, out: Path, ema: bool = False) -> Path:
    ckpt = load_checkpoint(checkpoint)
    if ema and ckpt.learner["ema"] is None:
        raise ValueError(f"{checkpoint} holds no EMA of the weights (the run had learner.ema_decay off); export without --ema")
    cfg = TrainConfig.model_validate_json(ckpt.extra["config"])
    if cfg.policy.kind != "diffusion":
        raise ValueError(f"{checkpoint} holds a {cfg.policy.kind!r} policy; export writes diffusers folders of the diffusion family")
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new folder")
    policy = build_policy(cfg.policy_section)
    policy.load_state_dict(ckpt.learner["ema" if ema else "policy"])
    policy.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Merge a diffusion checkpoint (LoRA adapters or full weights) into a diffusers folder.")
    ap.add_argument("--checkpoint", required=True, type=Path, help="A checkpoint folder step-NNNNNNNN of a GRPO run.")
    ap.add_argument("--out", required=True, type=Path, help="The new folder to write.")
    ap.add_argument("--ema", action="store_true", help="Export the EMA of the weights (learner.ema_decay) instead of the live ones.")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(export(args.checkpoint, args.out, args.ema))
    except (CheckpointError, WeightsError, ValueError, FileExistsError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
