"""The single-machine demo as a controlled experiment: photos -> pre-training -> mining -> four arms -> evaluation.

    python -m trainer.demo --config configs/cpu-demo.yaml [--set a.b=v ...] [--report runs/demo/report]

From one pre-trained policy (cached between runs, trainer/demo/cache.py), at the same number of updates and
images per update: the pre-trained policy, an SFT control, GRPO on the hard subset and GRPO on a random subset
of the same size (trainer/demo/arms.py). One local reward service scores the GRPO rollouts and every
evaluation, with the PSNR term's thresholds set from the data (reward.psnr_range_percentiles). Each arm is
evaluated in-distribution and OOD on the same fixed test crops (the eval section of the config).

Writes the report folder: results.md / results.json (every arm, split, column and image; paired per-image
PSNR changes with 95% intervals against the pre-trained policy and the SFT control), curves.png (reward and
losses per step of both GRPO runs), grid.png (degraded / each arm / ground truth), candidates_<arm>.png (the G
stochastic candidates of a few test images with their R, before and after GRPO), config.json (the resolved
config, thresholds included) and notes.json (the reward terms and which ran on random weights, budgets,
timings, load average). The verdicts say "improved" only when the interval excludes 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch

from irpo_common.device import resolve_device
from trainer.actors.scoring import Scorer, check_services
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.data.post_training import TrainDataError
from trainer.demo.arms import GRPO_ARMS, arm_config, fresh_run_dirs, grpo, sft_control, write_random_subset
from trainer.demo.cache import cached_pretrain
from trainer.demo.corpus import describe, fetch
from trainer.demo.report import SPLITS, candidates_grid, evaluation_protocol, image_grid, plot_curves, watch_summary, write_results
from trainer.evaluate import evaluate
from trainer.evaluate_real_world import evaluate_real_world
from trainer.local_service import LocalRewardService
from trainer.metrics_log import read_metrics
from trainer.mining import calibrate_psnr_range, mine
from trainer.policies import Policy, build_policy
from trainer.run import STOP_ERRORS


def _policy(cfg: TrainConfig, weights: Path) -> Policy:
    policy = build_policy(cfg.with_policy_weights(weights).policy_section)
    return policy.to(resolve_device(cfg.device)).eval()


def per_epoch(rows: list[dict], key: str) -> list[float]:
    """Mean of `key` over the steps of each pass over the training images (a step counts in the epoch of its last image)."""
    groups: dict[int, list[float]] = {}
    for r in rows:
        groups.setdefault(math.floor(r["epoch"] - 1e-9), []).append(r[key])
    return [sum(v) / len(v) for _, v in sorted(groups.items())]


def group_spread(rows: list[dict]) -> dict:
    """How far apart a group's candidates score, over a whole run: the mean within-group std of R and its share of the mean R."""
    std = sum(r["reward/group_std"] for r in rows) / len(rows)
    mean = sum(r["reward/mean"] for r in rows) / len(rows)
    return {"group_std": std, "mean_reward": mean, "of_mean_reward": std / max(abs(mean), 1e-12)}


def _stage(name: str, t0: float) -> None:
    print(f"\n[demo] ==== {name} (t = {time.perf_counter() - t0:.0f} s) ====", flush=True)


def _score(scorer: Scorer, out: torch.Tensor, target: torch.Tensor, degraded: torch.Tensor, task: str):
    """N restorations (N, 3, H, W) of one image, in one request, scored as the GRPO rollouts are (same service, weights,
    judge): the clamped output, as its PSNR is measured (the reward service refuses values outside [0, 1])."""
    n = out.shape[0]
    return scorer.score(out.clamp(0, 1), target.expand(n, -1, -1, -1), degraded.expand(n, -1, -1, -1), [task] * n, group_size=n)


def _reward_fn(scorer: Scorer):
    """R of N restorations of one image (evaluate's RewardFn)."""
    return lambda out, target, degraded, task: _score(scorer, out, target, degraded, task).rewards.tolist()


def scored_by(cfg: TrainConfig, scorer: Scorer) -> dict:
    """evaluate()'s scoring arguments for this config: R per restoration; for the face task R and the service's
    LPIPS distance from the same request (evaluate adds PSNR, SSIM and the identity similarity)."""
    if cfg.data.tasks != ["face"]:
        return {"reward": _reward_fn(scorer)}

    def measure(out: torch.Tensor, target: torch.Tensor, degraded: torch.Tensor, task: str) -> list[dict[str, float]]:
        scored = _score(scorer, out, target, degraded, task)
        return [{"reward": r, "lpips": lp} for r, lp in zip(scored.rewards.tolist(), scored.metrics["lpips"].tolist())]
    return {"measure": measure}


def _reward_terms(cfg: TrainConfig, random_terms: list[str]) -> dict[str, dict]:
    """Every generic term of R_gen with its weight and whether its model is real here. No-reference quality
    terms (BRISQUE/NIQE, once the reward service has them) appear here with their weight like any other."""
    weights = cfg.reward.weights.model_dump()
    return {t: {"weight": w, "random_weights": t in random_terms} for t, w in weights.items() if t not in ("gen", "judge", "task")}


class Stages:
    """Prints each stage's start and adds up the seconds spent in each named stage."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}

    def __call__(self, name, fn, *args, **kwargs):
        _stage(name, self.t0)
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t
        return out


def prepare(cfg: TrainConfig, timed: Stages) -> tuple[TrainConfig, Path, bool, Policy]:
    """What every arm starts from: the photos, the (cached) pre-trained weights, the hard and random subsets and the
    reward's PSNR thresholds. Returns (the calibrated config, the pre-trained weights, whether they were reused, the
    pre-trained policy); the run folders are emptied."""
    corpus = None
    if cfg.data.source == "demo":
        corpus = timed("demo photos", fetch, cfg.data.root)
        print(f"[demo] {describe(corpus)} under {cfg.data.root}")
    torch.manual_seed(cfg.seed)
    pretrained, reused = timed("supervised pre-training", cached_pretrain, cfg, corpus)
    pre = _policy(cfg, pretrained)
    timed("mining the hard subset", mine, cfg, pre)
    write_random_subset(cfg)
    cfg = calibrate_psnr_range(cfg)
    fresh_run_dirs(cfg)
    return cfg, pretrained, reused, pre


def needs_seeds(config_path: str) -> str:
    """What one demo run can and cannot say, and the command that can."""
    return ("This is ONE post-training seed: its intervals hold the photo-to-photo spread only. The claims 'GRPO on the hard subset "
            "beats the pre-trained start / the SFT control / GRPO on a random subset' need the seed-to-seed spread too: "
            f"python -m trainer.experiment --config {config_path} --seeds 3")


def run_demo(cfg: TrainConfig, report: Path, config_path: str = "configs/cpu-demo.yaml") -> dict:
    load_start = os.getloadavg()
    timed = Stages()
    times, t0 = timed.times, timed.t0
    percentiles = cfg.reward.psnr_range_percentiles
    cfg, pretrained, reused, pre = prepare(cfg, timed)
    report.mkdir(parents=True, exist_ok=True)
    (report / "config.json").write_text(cfg.model_dump_json(indent=1))

    policies = {"pretrained": pre}
    steps: dict[str, int] = {}
    with LocalRewardService.maybe(cfg.reward) as local_url:
        if local_url is not None:  # one service for every arm and every evaluation
            cfg = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"url": local_url, "start_local": False})})
        random_terms = check_services(cfg.reward, cfg.judge)  # also checks the service's PSNR thresholds
        scorer = Scorer(cfg.reward, cfg.judge)
        reward = _reward_fn(scorer)
        real_world: dict[str, dict] = {}

        def evaluate_arm(arm: str) -> dict:
            if cfg.data.face.real_world:
                real_world[arm] = evaluate_real_world(cfg, policies[arm], scorer.reward)
            return {s: evaluate(cfg, policies[arm], ood=s == "ood", **scored_by(cfg, scorer)) for s in SPLITS}

        evals = {"pretrained": timed("evaluating the arms", evaluate_arm, "pretrained")}
        weights, steps["sft_control"] = timed("SFT control (the family's supervised loss, same budget)", sft_control, arm_config(cfg, "sft_control", pretrained))
        policies["sft_control"] = _policy(cfg, weights)
        evals["sft_control"] = timed("evaluating the arms", evaluate_arm, "sft_control")
        for arm in GRPO_ARMS:  # one after the other: they share the machine's cores
            weights, steps[arm], _ = timed(f"GRPO on local Ray: {arm}", grpo, arm_config(cfg, arm, pretrained))
            policies[arm] = _policy(cfg, weights)
            evals[arm] = timed("evaluating the arms", evaluate_arm, arm)
        # the G candidates GRPO compares, before and after it, scored by the same service
        candidates = {arm: timed("candidate grids", candidates_grid, cfg, policies[arm], reward, report / f"candidates_{arm}.png")
                      for arm in ("pretrained", "grpo_hard")}

    _stage("report", t0)
    terms = _reward_terms(cfg, random_terms)
    per_step = cfg.rollout.num_workers * cfg.rollout.images_per_worker
    pretrain_images = cfg.pretrain.steps * cfg.pretrain.batch_size
    protocol = evaluation_protocol(cfg)
    notes = {
        "arms": {arm: {"updates": steps.get(arm, 0), "images_per_update": per_step if arm in steps else 0} for arm in policies},
        "budget": {"pretrain_updates": cfg.pretrain.steps, "pretrain_images": pretrain_images, "post_train_images_per_arm": steps["grpo_hard"] * per_step,
                   "post_over_pretrain_images": steps["grpo_hard"] * per_step / max(pretrain_images, 1), "pretrain_reused": reused},
        "psnr_range_db": list(cfg.reward.psnr_range_db) if cfg.reward.psnr_range_db else "the service's default",
        "psnr_range_source": f"percentiles {list(percentiles)} of the pre-trained PSNR over the training set ({cfg.mining.manifest})" if percentiles else "set in the config",
        "reward_weights": cfg.reward.weights.model_dump(),
        "reward_terms": terms,
        "random_weights": random_terms,
        "judge": cfg.judge.url or "not configured (R_judge absent, its weight renormalised away)",
        "reward_mean_per_epoch": {arm: per_epoch(read_metrics(cfg.logging.dir / arm / "metrics.jsonl"), "reward/mean") for arm in GRPO_ARMS},
        "reward_group_std_per_epoch": {arm: per_epoch(read_metrics(cfg.logging.dir / arm / "metrics.jsonl"), "reward/group_std") for arm in GRPO_ARMS},
        "within_group_spread": {arm: group_spread(read_metrics(cfg.logging.dir / arm / "metrics.jsonl")) for arm in GRPO_ARMS},
        "candidates": candidates,
        "stage_seconds": times,
        "load_average_start": load_start,
    }
    identity = evals["pretrained"]["id"].get("identity_network")
    extra = {"protocol": protocol, "psnr_range_db": notes["psnr_range_db"], "random_weight_terms": random_terms, "within_group_spread": notes["within_group_spread"]}
    if identity:
        extra["identity_network"] = notes["identity_network"] = identity
    if real_world:
        extra["real_world"] = real_world
    watch = {arm: w for arm in GRPO_ARMS if (w := watch_summary(cfg.logging.dir / arm / "watch.json"))}
    if watch:
        extra["watch"] = notes["watch"] = watch
    extra["needs_seeds"] = needs_seeds(config_path)
    tables, verdicts = write_results(evals, extra, report)
    with open(report / "results.md", "a") as f:
        f.write(f"\n{extra['needs_seeds']}\n")
    plot_curves({arm: cfg.logging.dir / arm / "metrics.jsonl" for arm in GRPO_ARMS}, report / "curves.png")
    image_grid(cfg, policies, report / "grid.png")
    notes["total_seconds"] = time.perf_counter() - t0
    notes["load_average_end"] = os.getloadavg()
    (report / "notes.json").write_text(json.dumps(notes, indent=1))

    print("\n" + tables)
    for v in verdicts:
        print(f"[demo] {v}")
    print(f"[demo] PSNR term thresholds: {notes['psnr_range_db']} dB ({notes['psnr_range_source']})")
    zero = [t for t in random_terms if terms.get(t, {}).get("weight", 0.0) == 0.0]
    if random_terms:
        print(f"[demo] the reward terms {', '.join(random_terms)} ran on RANDOM weights (no model hub here); weight 0 in R: {', '.join(zero) or 'none'}")
    for arm in GRPO_ARMS:
        print(f"[demo] {arm}: R per epoch " + ", ".join(f"{v:.4f}" for v in notes["reward_mean_per_epoch"][arm])
              + "; within-group std of R " + ", ".join(f"{v:.4f}" for v in notes["reward_group_std_per_epoch"][arm]))
        spread = notes["within_group_spread"][arm]
        print(f"[demo] {arm}: within-group std of R over the run {spread['group_std']:.4f} = {spread['of_mean_reward']:.1%} of mean R {spread['mean_reward']:.4f}")
    for arm, w in watch.items():
        print(f"[demo] {arm}: reward-hacking watch over {w['gold_pairs']} held-out pairs, steps {w['steps'][0]}-{w['steps'][1]}: "
              + ", ".join(f"{k} {c['change']:+.4f} +- {c['ci95']:.4f}" for k, c in w["change"].items())
              + f"; {len(w['warnings'])} warning(s)" + "".join(f"\n[demo]   {text}" for text in w["warnings"]))
    if identity:
        print(f"[demo] identity similarity: {identity}")
    print(f"[demo] {extra['needs_seeds']}")
    print(f"[demo] judge: {notes['judge']}")
    print(f"[demo] report: {report}/results.md, results.json, curves.png, grid.png, candidates_*.png, config.json, notes.json")
    print(f"[demo] total {notes['total_seconds'] / 60:.1f} min (load average at start {load_start[0]:.2f}, end {notes['load_average_end'][0]:.2f}): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="IRPO demo on one machine: pre-train, mine, train the four arms (SFT control, GRPO hard/random on Ray), evaluate, report.")
    parser.add_argument("--config", default="configs/cpu-demo.yaml", help="YAML config (default configs/cpu-demo.yaml).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="a.b=VALUE", help="Override a config field (repeatable).")
    parser.add_argument("--report", type=Path, default=Path("runs/demo/report"), help="Report folder.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        cfg = load_config(args.config, args.overrides)
        run_demo(cfg, args.report, args.config)
    except (ConfigError, TrainDataError, *STOP_ERRORS) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
