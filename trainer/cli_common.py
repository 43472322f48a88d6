"""What the pretrain/mining/evaluate command lines share: config loading and the policy to use."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from irpo_common.device import resolve_device
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.policies import Policy, WeightsError, build_policy


def parser(description: str, weights: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, type=Path, help="YAML config file (trainer/config.py).")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="Override a config value, e.g. --set pretrain.steps=100 (repeatable).")
    if weights:
        p.add_argument("--weights", type=Path, help="Policy weights; default the policy's starting weights (model.checkpoint or policy.diffusion.pretrained), else pretrain.output.")
    return p


def load(args: argparse.Namespace) -> TrainConfig:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")


def policy_for(cfg: TrainConfig, weights: Path | None) -> Policy:
    """The configured family's policy to score or evaluate; refuses to run on random weights by accident."""
    path = weights or cfg.policy_section.weights or cfg.pretrain.output
    if not Path(path).exists():  # a file, or a diffusers folder for the diffusion family
        sys.exit(f"error: no weights at {path}: pass --weights, set {cfg.policy_weights_field}, or run python -m trainer.pretrain first")
    try:
        policy = build_policy(cfg.with_policy_weights(Path(path)).policy_section)
    except WeightsError as exc:
        sys.exit(f"error: {exc}")
    return policy.to(resolve_device(cfg.device)).eval()
