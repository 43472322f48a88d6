"""The single-machine demo, end to end: photos -> pre-training -> mining -> GRPO on local Ray -> evaluation.

    python -m trainer.demo --config configs/cpu-demo.yaml [--set a.b=v ...] [--report runs/demo/report]

Writes the report folder: results.md / results.json (pre- vs post-trained, in-distribution and
OOD, with the degraded input as a baseline row), curves.png (reward and losses per step),
grid.png (degraded / pre-trained / post-trained / ground truth) and notes.json (what ran on
random weights, the reward weights, the timings). The tables say plainly whether post-training
changed PSNR beyond the image-to-image spread.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from reward_server.device import resolve_device
from reward_server.nr_iqa import provenance_note
from reward_server.nr_terms import NR_TERMS
from trainer.actors.scoring import reward_weights
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.data.demo_corpus import fetch
from trainer.demo_report import image_grid, plot_curves, write_tables
from trainer.evaluate import evaluate
from trainer.metrics_log import read_metrics
from trainer.mining import mine
from trainer.model import RestorationPolicy, build_policy
from trainer.pretrain import pretrain
from trainer.run import STOP_ERRORS, train


def _policy(cfg: TrainConfig, weights: Path) -> RestorationPolicy:
    policy = build_policy(cfg.model.model_copy(update={"checkpoint": weights}))
    return policy.to(resolve_device(cfg.device)).eval()


def per_epoch(rows: list[dict], key: str) -> list[float]:
    """Mean of `key` over the steps of each pass over the training images (a step counts in the epoch of its last image)."""
    groups: dict[int, list[float]] = {}
    for r in rows:
        groups.setdefault(math.floor(r["epoch"] - 1e-9), []).append(r[key])
    return [sum(v) / len(v) for _, v in sorted(groups.items())]


def _stage(name: str, t0: float) -> None:
    print(f"\n[demo] ==== {name} (t = {time.perf_counter() - t0:.0f} s) ====", flush=True)


def run_demo(cfg: TrainConfig, report: Path) -> dict:
    t0 = time.perf_counter()
    times: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        _stage(name, t0)
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        times[name] = time.perf_counter() - t
        return out

    if cfg.data.source == "demo":
        manifest = timed("demo photos", fetch, cfg.data.root)
        n_test = sum(f.startswith("test/") for f in manifest["files"])
        print(f"[demo] {len(manifest['files']) - n_test} training + {n_test} test photos under {cfg.data.root}" + ("" if manifest["debian_packages"] else " (scikit-image photos only: " + "; ".join(manifest["problems"]) + ")"))
    torch.manual_seed(cfg.seed)
    pretrained = timed("supervised pre-training", pretrain, cfg)
    pre = _policy(cfg, pretrained)
    timed("mining the hard subset", mine, cfg, pre)
    pre_results = timed("evaluating the pre-trained policy", lambda: {s: evaluate(cfg, pre, ood=s == "ood") for s in ("in_distribution", "ood")})

    # a fresh GRPO run every time the demo runs: its folder belongs to the demo
    shutil.rmtree(cfg.logging.dir, ignore_errors=True)
    shutil.rmtree(cfg.checkpoint.dir, ignore_errors=True)
    grpo_cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"checkpoint": pretrained})})
    result = timed("GRPO post-training on local Ray", train, grpo_cfg)
    post = _policy(cfg, result.checkpoint / "policy.safetensors")
    post_results = timed("evaluating the post-trained policy", lambda: {s: evaluate(cfg, post, ood=s == "ood") for s in ("in_distribution", "ood")})

    _stage("report", t0)
    report.mkdir(parents=True, exist_ok=True)
    results = {s: {"pre-trained": pre_results[s], "post-trained": post_results[s]} for s in pre_results}
    tables, verdicts = write_tables(results, report)
    plot_curves(cfg.logging.dir / "metrics.jsonl", report / "curves.png")
    image_grid(cfg, pre, post, report / "grid.png")
    rows = read_metrics(cfg.logging.dir / "metrics.jsonl")
    random_terms = result.random_reward_terms
    notes = {
        "random_weights": random_terms,
        "reward_weights": reward_weights(cfg.reward).model_dump(),
        "no_reference_terms": {t: provenance_note(t) for t in NR_TERMS if getattr(reward_weights(cfg.reward), t) > 0},
        "judge": cfg.judge.url or "not configured (R_judge absent, its weight renormalised away)",
        "grpo_steps": result.steps,
        # one step's reward mostly says how hard its two crops are; an epoch visits every image once,
        # but with fresh crops, so compare epochs against a run with the RL term off, not each other
        "reward_mean_per_epoch": per_epoch(rows, "reward/mean"),
        "reward_group_std_per_epoch": per_epoch(rows, "reward/group_std"),
        "stage_seconds": times,
        "total_seconds": time.perf_counter() - t0,
    }
    (report / "notes.json").write_text(json.dumps(notes, indent=1))
    print("\n" + tables)
    for v in verdicts:
        print(f"[demo] {v}")
    if random_terms:
        zero = [t for t in random_terms if notes["reward_weights"].get(t, 0.0) == 0.0]
        print(f"[demo] the reward terms {', '.join(random_terms)} ran on RANDOM weights (no model hub here); weight 0 in R: {', '.join(zero) or 'none'}")
    print("[demo] GRPO reward R per epoch (mean over its steps): " + ", ".join(f"{v:.4f}" for v in notes["reward_mean_per_epoch"])
          + "; within-group std of R: " + ", ".join(f"{v:.4f}" for v in notes["reward_group_std_per_epoch"]))
    for term, source in notes["no_reference_terms"].items():
        print(f"[demo] no-reference term {term} (weight {notes['reward_weights'][term]}): {source}")
    print(f"[demo] judge: {notes['judge']}")
    print(f"[demo] report: {report}/results.md, results.json, curves.png, grid.png, notes.json")
    print(f"[demo] total {notes['total_seconds'] / 60:.1f} min: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="IRPO demo on one machine: pre-train, mine, GRPO post-train on Ray, evaluate, report.")
    parser.add_argument("--config", default="configs/cpu-demo.yaml", help="YAML config (default configs/cpu-demo.yaml).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="a.b=VALUE", help="Override a config field (repeatable).")
    parser.add_argument("--report", type=Path, default=Path("runs/demo/report"), help="Report folder.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        cfg = load_config(args.config, args.overrides)
        run_demo(cfg, args.report)
    except (ConfigError, *STOP_ERRORS) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
