"""A reward-hacking watch: R rising while the ground-truth metrics fall.

Over-optimising the reward model is the most reported failure of RL post-training (flow_grpo issues 233,
92, 216; DanceGRPO 55). Every `watch.every_steps` learner steps the run restores a small fixed set of
held-out training pairs (pairs the policy is not post-trained on) with the current policy's deterministic
output, scores each with the run's R and with the gold metrics PSNR and SSIM against its ground truth, and
logs them beside the training R. A watch point is compared with the one `watch.window` points earlier,
paired over the gold pairs: when R rose beyond its 95% interval while PSNR or SSIM fell beyond theirs,
the run warns in its log and writes the warning into watch.json, which the demo reports carry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from trainer.metrics import psnr_ssim
from trainer.stats import mean_ci95

GOLD_METRICS = ("psnr", "ssim")


@dataclass
class WatchPoint:
    step: int  # learner steps completed when the gold set was restored
    reward: list[float]  # R of each gold pair's output
    psnr: list[float]
    ssim: list[float]
    train_reward: float | None  # mean training R over the steps since the previous watch point

    def summary(self) -> dict[str, float]:
        n = len(self.reward)
        return {"gold/reward": sum(self.reward) / n, "gold/psnr": sum(self.psnr) / n, "gold/ssim": sum(self.ssim) / n}


def gold_change(before: WatchPoint, after: WatchPoint, key: str) -> tuple[float, float]:
    """(mean, 95% half-width) of after - before in `key` ('reward', 'psnr', 'ssim'), paired over the gold pairs."""
    return mean_ci95([a - b for a, b in zip(getattr(after, key), getattr(before, key))])


def hacking_warning(before: WatchPoint, after: WatchPoint) -> str | None:
    """A warning when R rose beyond its 95% interval (paired over the gold pairs) while a gold metric fell beyond its own."""
    r, half = gold_change(before, after, "reward")
    if r - half <= 0:
        return None
    fell = []
    for key in GOLD_METRICS:
        d, h = gold_change(before, after, key)
        if d + h < 0:
            fell.append(f"{key.upper()} {d:+.4g} +- {h:.2g}")
    if not fell:
        return None
    return (f"possible reward hacking between steps {before.step} and {after.step}: held-out R rose {r:+.4g} +- {half:.2g} "
            f"while {' and '.join(fell)} fell (paired over {len(after.reward)} gold pairs, 95% intervals)")


class Watch:
    """The series of watch points of a run and its warnings; its state travels in checkpoints."""

    def __init__(self, window: int):
        self.window = window
        self.points: list[WatchPoint] = []
        self.warnings: list[str] = []

    def add(self, point: WatchPoint) -> str | None:
        self.points.append(point)
        if len(self.points) <= self.window:
            return None
        warning = hacking_warning(self.points[-1 - self.window], point)
        if warning:
            self.warnings.append(warning)
        return warning

    def state(self) -> dict:
        return {"points": [asdict(p) for p in self.points], "warnings": list(self.warnings)}

    def load_state(self, state: dict) -> None:
        self.points = [WatchPoint(**p) for p in state["points"]]
        self.warnings = list(state["warnings"])


def measure(step: int, gold, restore_fn, score_fn, convention: str, train_reward: float | None) -> WatchPoint:
    """One watch point: the gold pairs restored by `restore_fn` ((N,3,H,W) -> (N,3,H,W)), scored by
    `score_fn(restored, target, degraded, tasks) -> (N,) R` and by PSNR/SSIM against the targets."""
    items = [gold[i] for i in range(len(gold))]
    degraded = torch.stack([it["degraded"] for it in items])
    target = torch.stack([it["target"] for it in items])
    restored = restore_fn(degraded).clamp(0, 1)
    reward = score_fn(restored, target, degraded, [it["task"] for it in items]).tolist()
    pairs = [psnr_ssim(r, t, convention) for r, t in zip(restored, target)]
    return WatchPoint(step, reward, [p for p, _ in pairs], [s for _, s in pairs], train_reward)
