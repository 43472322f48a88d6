"""What the pretrain/mining/evaluate command lines share: config loading and the policy to use."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from irpo_common.device import resolve_device
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.model import RestorationPolicy, WeightsError, build_policy


def parser(description: str, weights: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, type=Path, help="YAML config file (trainer/config.py).")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="Override a config value, e.g. --set pretrain.steps=100 (repeatable).")
    if weights:
        p.add_argument("--weights", type=Path, help="Policy weights; default model.checkpoint, else pretrain.output.")
    return p


def load(args: argparse.Namespace) -> TrainConfig:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")


def policy_for(cfg: TrainConfig, weights: Path | None) -> RestorationPolicy:
    """The policy to score or evaluate; refuses to run on random weights by accident."""
    path = weights or cfg.model.checkpoint or cfg.pretrain.output
    if not Path(path).is_file():
        sys.exit(f"error: no weights at {path}: pass --weights, set model.checkpoint, or run python -m trainer.pretrain first")
    try:
        policy = build_policy(cfg.model.model_copy(update={"checkpoint": Path(path)}))
    except WeightsError as exc:
        sys.exit(f"error: {exc}")
    return policy.to(resolve_device(cfg.device)).eval()
