"""Action-sensitivity diagnostic of any checkpoint (trainer/diagnostics.py measures, this prints).

    python -m trainer.diagnose --config F [--weights W] [--images 16] [--no-reward] [--set a.b=v ...]

The images are a seeded sample of the run's training set (the mined subset when grpo.train_on is
'subset'), cut to data.crop_size as in the rollouts. R's spread comes from the configured reward
service (started on loopback when reward.start_local is set, as a run does) and judge; with
--no-reward, or when the service does not answer, only PSNR and SSIM spreads are printed.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import torch

from trainer import cli_common
from trainer.actors.scoring import Scorer, ServiceUnavailable, check_services
from trainer.config import TrainConfig
from trainer.diagnostics import action_sensitivity, group_spread
from trainer.local_service import LocalRewardService
from trainer.data.post_training import TrainDataError, load_training_data


def training_sample(cfg: TrainConfig, n: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(degraded, target, tasks) of n training crops drawn with the run's seed."""
    dataset = load_training_data(cfg)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.seed))[:n]
    items = [dataset[int(i)] for i in order]
    return torch.stack([it["degraded"] for it in items]), torch.stack([it["target"] for it in items]), [it["task"] for it in items]


def main(argv: list[str] | None = None) -> int:
    p = cli_common.parser("Does exploration reach the output? Per-action output change and within-group PSNR/SSIM/R spread.")
    p.add_argument("--images", type=int, default=16, help="Training images to measure on (default 16).")
    p.add_argument("--no-reward", action="store_true", help="Skip R's spread (needs no reward service).")
    args = p.parse_args(argv)
    if args.images < 1:
        sys.exit(f"error: --images must be at least 1, got {args.images}")
    cfg = cli_common.load(args)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    torch.manual_seed(cfg.seed)
    policy = cli_common.policy_for(cfg, args.weights)
    device = next(policy.parameters()).device
    try:
        degraded, target, tasks = training_sample(cfg, args.images)
    except TrainDataError as exc:
        sys.exit(f"error: {exc}")
    print(f"[diagnose] weights {args.weights or cfg.policy_section.weights or cfg.pretrain.output}; {len(tasks)} training crops of {degraded.shape[-1]} px")
    x = degraded.to(device)
    sens = action_sensitivity(policy, x)
    if sens is None:
        print(f"[diagnose] action sensitivity: not measured (the {cfg.policy.kind} policy has no named actions)")
    else:
        print(sens.table())
        if sens.warning():
            print(f"WARNING: {sens.warning()}")
    gen = torch.Generator().manual_seed(cfg.seed)
    with contextlib.ExitStack() as stack:
        score = None
        if not args.no_reward:
            local_url = stack.enter_context(LocalRewardService.maybe(cfg.reward))
            reward_cfg = cfg.reward.model_copy(update={"url": local_url}) if local_url else cfg.reward
            try:
                random_terms = check_services(reward_cfg, cfg.judge)
            except ServiceUnavailable as exc:
                print(f"[diagnose] R spread not measured: {exc}")
            else:
                scorer = Scorer(reward_cfg, cfg.judge)
                group = cfg.grpo.group_size

                def score(restored, reference, degraded_, tasks_):
                    return scorer.score(restored, reference, degraded_, tasks_, group_size=group).rewards

                if random_terms:
                    print(f"[diagnose] the reward service runs on RANDOM weights for: {', '.join(random_terms)}")
        spread = group_spread(policy, x, target, tasks, cfg.grpo.group_size, generator=gen, score=score)
    print(spread.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
