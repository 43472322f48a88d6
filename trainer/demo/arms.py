"""The demo's four arms, all from the same pre-trained weights, at the same updates and images per update.

- pretrained:  the starting policy itself;
- sft_control: the family's supervised loss (L1 of the deterministic output, or the diffusion loss) on the hard subset, with GRPO's images, crops and
               order per step, its optimiser (Adam, head lr multiplier, gradient clip) and its step count:
               what the same budget buys without any RL term;
- grpo_hard:   GRPO on the mined hard subset (IRPO);
- grpo_random: GRPO on a seeded random subset of the same size per task (mining.selection=random).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from irpo_common.device import resolve_device
from trainer.config import TrainConfig
from trainer.data.post_training import DataCursor, load_training_data, step_items
from trainer.grpo import build_optimizer
from trainer.mining import read_manifest, select, write_subset
from trainer.policies import build_policy, save_policy
from trainer.pretrain import fit_supervised
from trainer.run import total_steps, train

ARMS = ("pretrained", "sft_control", "grpo_hard", "grpo_random")
TRAINED_ARMS = ARMS[1:]
GRPO_ARMS = ("grpo_hard", "grpo_random")


def _random_subset(cfg: TrainConfig) -> Path:
    s = cfg.mining.subset
    return s.with_name(f"{s.stem}_random{s.suffix}")


def arm_config(cfg: TrainConfig, arm: str, pretrained: Path) -> TrainConfig:
    """The run config of a trained arm: the pre-trained start, its subset, and its own run and checkpoint folders."""
    if arm not in TRAINED_ARMS:
        raise ValueError(f"unknown trained arm {arm!r}; expected one of {TRAINED_ARMS}")
    mining = cfg.mining
    if arm == "grpo_random":
        mining = mining.model_copy(update={"selection": "random", "subset": _random_subset(cfg)})
    return cfg.with_policy_weights(pretrained).model_copy(update={
        "mining": mining,
        "logging": cfg.logging.model_copy(update={"dir": cfg.logging.dir / arm}),
        "checkpoint": cfg.checkpoint.model_copy(update={"dir": cfg.checkpoint.dir / arm}),
    })


def write_random_subset(cfg: TrainConfig) -> list[str]:
    """The random control's subset from mining's manifest: as many images per task as the hard subset, seeded."""
    records = read_manifest(cfg.mining.manifest)
    random_cfg = cfg.model_copy(update={"mining": cfg.mining.model_copy(update={"selection": "random", "subset": _random_subset(cfg)})})
    ids = select(records, cfg.mining.fraction, cfg.mining.metric, "random", cfg.seed)
    write_subset(random_cfg, records, ids)
    return ids


def fresh_run_dirs(cfg: TrainConfig) -> None:
    """Each demo run trains every arm afresh: its folders belong to the demo."""
    shutil.rmtree(cfg.logging.dir, ignore_errors=True)
    shutil.rmtree(cfg.checkpoint.dir, ignore_errors=True)


def sft_control(cfg: TrainConfig) -> tuple[Path, int]:
    """Train the SFT control arm (cfg from arm_config); returns its weights and its number of updates."""
    torch.manual_seed(cfg.seed)
    policy = build_policy(cfg.policy_section).to(resolve_device(cfg.device))
    data = load_training_data(cfg)
    per_step = cfg.rollout.num_workers * cfg.rollout.images_per_worker
    steps = total_steps(cfg, len(data))
    cursor = DataCursor(len(data), cfg.seed)
    print(f"[sft_control] {steps} steps of {per_step} images ({len(data)} in the subset), Adam lr {cfg.optim.lr} (heads x{cfg.optim.head_lr_mult}), from {cfg.policy_section.weights}", flush=True)
    fit_supervised(policy, lambda step: step_items(data, cursor, step, per_step), build_optimizer(policy, cfg.optim), steps,
                   grad_clip=cfg.optim.grad_clip, log_every=max(1, steps // 5), tag="sft_control", seed=cfg.seed)
    return save_policy(policy, cfg.logging.dir / "policy.safetensors"), steps


def grpo(cfg: TrainConfig) -> tuple[Path, int, list[str]]:
    """Train a GRPO arm on local Ray (cfg from arm_config); returns its weights (the EMA's under learner.ema_decay),
    updates and the random-weight reward terms."""
    result = train(cfg)
    weights = "ema.safetensors" if cfg.learner.ema_decay else "policy.safetensors"
    return result.checkpoint / weights, result.steps, result.random_reward_terms
