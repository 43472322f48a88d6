"""Export a GRPO checkpoint of the diffusion family as a diffusers folder, adapters merged.

    python -m trainer.export --checkpoint runs/grpo/checkpoints/step-00000100 --out runs/export/x4-grpo

A pipeline policy (x4 upscaler, LDM-SR, ControlNet) gives a copy of its source pipeline folder with the
trained unet/ (and controlnet/): the matching diffusers pipeline loads it with from_pretrained, and
`policy.diffusion.pretrained: FOLDER` (without lora) continues from it. The run's config comes from the
checkpoint itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer.checkpointing import CheckpointError, load_checkpoint
from trainer.config import TrainConfig
from trainer.policies import WeightsError, build_policy


def export(checkpoint: Path, out: Path) -> Path:
    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.model_validate_json(ckpt.extra["config"])
    if cfg.policy.kind != "diffusion":
        raise ValueError(f"{checkpoint} holds a {cfg.policy.kind!r} policy; export writes diffusers folders of the diffusion family")
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new folder")
    policy = build_policy(cfg.policy_section)
    policy.load_state_dict(ckpt.learner["policy"])
    policy.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Merge a diffusion checkpoint (LoRA adapters or full weights) into a diffusers folder.")
    ap.add_argument("--checkpoint", required=True, type=Path, help="A checkpoint folder step-NNNNNNNN of a GRPO run.")
    ap.add_argument("--out", required=True, type=Path, help="The new folder to write.")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(export(args.checkpoint, args.out))
    except (CheckpointError, WeightsError, ValueError, FileExistsError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
