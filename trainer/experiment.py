"""The demo's controlled experiment replicated over post-training seeds, judged across seeds.

    python -m trainer.experiment --config configs/cpu-demo-diffusion.yaml --seeds 3 [--report runs/experiment/report]

One pre-training, mining and random subset (trainer/demo/run.py prepare) as the demo; then every trained arm
(sft_control, grpo_hard, grpo_random; trainer/demo/arms.py) with K post-training seeds 0..K-1 (config `seed`: the
GRPO sampling noise and data order, the SFT draws) from the SAME pre-trained weights, on the demo's fixed evaluation
protocol. The jobs run as tasks on one local Ray and one local reward service, as many at once as Ray's CPUs allow
(a GRPO arm's actors hold its learner ranks' and rollout actors' CPUs; an SFT arm one CPU).

Writes the report folder: results.json ({"seeds", "unit": "photo", "protocol", "per_seed": [...], "arms": {arm:
{split: {"across_seeds": {...}}}}}), results.md (the per-seed table, the across-seed table, the verdicts and their
multiplicity) and notes.json (timings, load). Per seed, an arm's change against a reference is the mean over photos
of the photo-level paired change (each photo's columns averaged first; the reference `pretrained` is one model,
`sft_control` and, for grpo_hard, `grpo_random` the arm of the same seed); across seeds it is the mean of those K changes with a Student t 95%
interval over the seeds (K - 1 degrees of freedom). Verdicts say "improved" / "worsened" only beyond that interval.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from trainer.actors.scoring import Scorer, check_services
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.data.post_training import TrainDataError
from trainer.demo.arms import GRPO_ARMS, TRAINED_ARMS, arm_config, grpo, sft_control
from trainer.demo.report import COMPARED, REFERENCES, SPLITS, TABLE_REFERENCES, evaluation_protocol, multiplicity, paired_change, verdict, watch_summary
from trainer.stats import mean_ci95
from trainer.demo.run import Stages, _policy, prepare, scored_by
from trainer.evaluate import evaluate
from trainer.local_service import LocalRewardService
from trainer.run import STOP_ERRORS, init_ray


def seed_config(cfg: TrainConfig, seed: int) -> TrainConfig:
    """Post-training seed `seed` of the experiment: its own `seed` and run folders; data.seed (degradations, the
    evaluation protocol) and the pre-trained start are unchanged."""
    return cfg.model_copy(update={
        "seed": seed,
        "logging": cfg.logging.model_copy(update={"dir": cfg.logging.dir / f"seed{seed}"}),
        "checkpoint": cfg.checkpoint.model_copy(update={"dir": cfg.checkpoint.dir / f"seed{seed}"}),
    })


def _evaluate_splits(cfg: TrainConfig, weights: Path) -> dict:
    policy = _policy(cfg, weights)
    scoring = scored_by(cfg, Scorer(cfg.reward, cfg.judge))
    return {s: evaluate(cfg, policy, ood=s == "ood", **scoring) for s in SPLITS}


def run_arm(cfg: TrainConfig, arm: str, seed: int, pretrained: Path) -> dict:
    """Train one arm at one seed (or take the pre-trained weights) and evaluate it: {"arm", "seed", "updates", "evals", "seconds"}."""
    t0 = time.perf_counter()
    if arm == "pretrained":
        weights, updates = pretrained, 0
    else:
        arm_cfg = arm_config(seed_config(cfg, seed), arm, pretrained)
        weights, updates = sft_control(arm_cfg) if arm == "sft_control" else grpo(arm_cfg)[:2]
    watch = watch_summary(arm_cfg.logging.dir / "watch.json") if arm in GRPO_ARMS else None
    return {"arm": arm, "seed": seed, "updates": updates, "evals": _evaluate_splits(cfg, weights), "watch": watch, "seconds": time.perf_counter() - t0}


def grpo_arm_cpus(cfg: TrainConfig) -> float:
    """CPUs a GRPO arm's actors hold: its learner ranks and its rollout actors."""
    return cfg.learner.num_ranks * cfg.learner.cpus_per_rank + cfg.rollout.num_workers * cfg.rollout.cpus_per_worker


def run_jobs(cfg: TrainConfig, jobs: list[tuple[str, int]], pretrained: Path) -> list[dict]:
    """run_arm for every (arm, seed) as Ray tasks, as many at once as Ray's CPUs allow; results in the order of `jobs`.

    A GRPO arm gets a placement group holding its actors' CPUs at once (its driver task takes none and its actors are
    placed inside the group): two arms can never each hold half of what both need. A group is removed as soon as its
    arm is done, which frees its CPUs for the next one."""
    job = ray.remote(run_arm)
    refs, groups = [], {}
    for arm, seed in jobs:
        if arm in GRPO_ARMS:
            group = placement_group([{"CPU": grpo_arm_cpus(cfg)}])
            ref = job.options(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)).remote(cfg, arm, seed, pretrained)
            groups[ref] = group
        else:
            ref = job.options(num_cpus=1).remote(cfg, arm, seed, pretrained)
        refs.append(ref)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        if done[0] in groups:
            remove_placement_group(groups.pop(done[0]))
        ray.get(done[0])  # an arm's error stops the experiment here, with its traceback
    return ray.get(refs)


def across_seeds(results: list[dict]) -> tuple[list[dict], dict, list[str]]:
    """results: run_arm() outputs (one pretrained, K seeds of each trained arm) -> (per-seed rows, arms' across_seeds, verdicts).

    A per-seed row: arm, seed, split, the column averages (psnr, ssim, reward, *_sampled) and, per reference and
    metric of COMPARED, the photo-level paired change with its within-run interval (delta_<m>_vs_<ref>, ci95_...).
    across_seeds[arm][split]: seeds, the means of the averages, and per reference and metric
    delta_<m>_vs_<ref> (mean over seeds of the per-seed change) and ci95_<m>_vs_<ref> (t over seeds).
    """
    evals = {(r["arm"], r["seed"]): r["evals"] for r in results}
    pre = next(r["evals"] for r in results if r["arm"] == "pretrained")
    seeds = sorted({r["seed"] for r in results if r["arm"] != "pretrained"})
    rows, arms, verdicts = [], {}, []
    for split in SPLITS:
        rows.append({"arm": "pretrained", "seed": None, "split": split, **pre[split]["average"]})
    for arm in TRAINED_ARMS:
        arms[arm] = {}
        for split in SPLITS:
            changes: dict[str, list[float]] = {}
            averages: dict[str, list[float]] = {}
            for seed in seeds:
                ev = evals[(arm, seed)][split]
                row = {"arm": arm, "seed": seed, "split": split, **ev["average"]}
                for k, v in ev["average"].items():
                    averages.setdefault(k, []).append(v)
                for reference in REFERENCES[arm]:
                    ref = pre[split] if reference == "pretrained" else evals[(reference, seed)][split]
                    for key in COMPARED:
                        if all(key in r for r in ev["per_image"]):
                            c = paired_change(ev, ref, key)
                            row[f"delta_{key}_vs_{reference}"], row[f"ci95_{key}_vs_{reference}"] = c["delta"], c["ci95"]
                            changes.setdefault(f"{key}_vs_{reference}", []).append(c["delta"])
                rows.append(row)
            summary = {"seeds": seeds, **{k: sum(v) / len(v) for k, v in averages.items()}}
            for name, values in changes.items():
                mean, half = mean_ci95(values)
                summary[f"delta_{name}"], summary[f"ci95_{name}"] = mean, half
                key, reference = name.split("_vs_")
                label, unit = COMPARED[key]
                verdicts.append(verdict({"delta": mean, "ci95": half, "n": len(values)}, arm, reference, SPLITS[split], label, unit, over="seeds"))
            arms[arm][split] = {"across_seeds": summary}
    return rows, arms, verdicts


def _fmt(row: dict, key: str) -> str:
    return f"{row[f'delta_{key}']:+.4f} +- {row[f'ci95_{key}']:.4f}" if f"delta_{key}" in row else "-"


def tables(rows: list[dict], arms: dict) -> str:
    """results.md's tables: every arm at every seed, then the across-seed changes."""
    sampled = "psnr_sampled" in rows[0]
    extra = " | PSNR samples | SSIM samples | R samples" if sampled else ""
    out = ["Per seed: column averages and photo-level paired changes (95% intervals over photos, within the run)", "",
           f"| arm | seed | split | PSNR | SSIM | R{extra} | PSNR vs pretrained | R vs pretrained | PSNR vs sft_control | R vs sft_control |",
           "|---" * (10 + 3 * sampled) + "|"]
    for r in rows:
        cells = [r["arm"], "-" if r["seed"] is None else str(r["seed"]), r["split"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['reward']:.4f}"]
        if sampled:
            cells += [f"{r['psnr_sampled']:.2f}", f"{r['ssim_sampled']:.4f}", f"{r['reward_sampled']:.4f}"]
        cells += [_fmt(r, "psnr_vs_pretrained"), _fmt(r, "reward_vs_pretrained"), _fmt(r, "psnr_vs_sft_control"), _fmt(r, "reward_vs_sft_control")]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Across seeds: mean over seeds of the photo-level paired change, 95% t interval over seeds", ""]
    keys = [k for k in COMPARED if f"delta_{k}_vs_pretrained" in arms["sft_control"]["id"]["across_seeds"]]
    header = " | ".join(f"{COMPARED[k][0]} vs {ref}" for k in keys for ref in TABLE_REFERENCES)
    out += [f"| arm | split | PSNR | SSIM | R | {header} |", "|---" * (5 + len(TABLE_REFERENCES) * len(keys)) + "|"]
    for arm, splits in arms.items():
        for split, s in splits.items():
            a = s["across_seeds"]
            cells = [arm, split, f"{a['psnr']:.2f}", f"{a['ssim']:.4f}", f"{a['reward']:.4f}"]
            cells += [_fmt(a, f"{k}_vs_{ref}") for k in keys for ref in TABLE_REFERENCES]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def run_experiment(cfg: TrainConfig, seeds: int, report: Path) -> dict:
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if grpo_arm_cpus(cfg) > cfg.ray.num_cpus:
        raise ConfigError(f"a GRPO arm needs {grpo_arm_cpus(cfg):g} CPUs (learner.num_ranks x cpus_per_rank + rollout.num_workers x cpus_per_worker), more than ray.num_cpus = {cfg.ray.num_cpus}")
    load_start = os.getloadavg()
    timed = Stages()
    cfg, pretrained, reused, _ = prepare(cfg, timed)
    report.mkdir(parents=True, exist_ok=True)
    (report / "config.json").write_text(cfg.model_dump_json(indent=1))
    with LocalRewardService.maybe(cfg.reward) as local_url:
        if local_url is not None:  # one service for every arm, seed and evaluation
            cfg = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"url": local_url, "start_local": False})})
        random_terms = check_services(cfg.reward, cfg.judge)
        started = init_ray(cfg)
        try:
            jobs = [("pretrained", 0)] + [(arm, s) for s in range(seeds) for arm in TRAINED_ARMS]
            results = timed(f"{len(jobs) - 1} arm runs ({seeds} seeds x {len(TRAINED_ARMS)} arms) and their evaluation on local Ray", run_jobs, cfg, jobs, pretrained)
        finally:
            if started:
                ray.shutdown()
    rows, arms, verdicts = across_seeds(results)
    text = tables(rows, arms)
    lines = "\n".join(f"- {v}" for v in verdicts)
    (report / "results.md").write_text(f"{text}\n{lines}\n\n{multiplicity(verdicts)}\n")
    watch = {f"{r['arm']}/{r['seed']}": r["watch"] for r in results if r["watch"]}  # each GRPO run's reward-hacking watch
    results_json = {"seeds": list(range(seeds)), "unit": "photo", "protocol": evaluation_protocol(cfg), "per_seed": rows, "arms": arms, "watch": watch,
                    "random_weight_terms": random_terms, "psnr_range_db": list(cfg.reward.psnr_range_db) if cfg.reward.psnr_range_db else None}
    (report / "results.json").write_text(json.dumps(results_json, indent=1))
    notes = {"stage_seconds": timed.times, "arm_seconds": {f"{r['arm']}/{r['seed']}": r["seconds"] for r in results},
             "updates": {f"{r['arm']}/{r['seed']}": r["updates"] for r in results}, "pretrain_reused": reused,
             "total_seconds": time.perf_counter() - timed.t0, "load_average_start": load_start, "load_average_end": os.getloadavg()}
    (report / "notes.json").write_text(json.dumps(notes, indent=1))
    print("\n" + text)
    for v in verdicts:
        print(f"[experiment] {v}")
    print(f"[experiment] {multiplicity(verdicts)}")
    for run, w in watch.items():
        print(f"[experiment] {run}: reward-hacking watch, {len(w['warnings'])} warning(s)" + "".join(f"\n[experiment]   {text}" for text in w["warnings"]))
    print(f"[experiment] report: {report}/results.md, results.json, notes.json, config.json")
    print(f"[experiment] total {notes['total_seconds'] / 60:.1f} min (load average at start {load_start[0]:.2f}, end {notes['load_average_end'][0]:.2f})")
    return results_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The demo's four arms with K post-training seeds from one pre-trained start, judged across seeds.")
    parser.add_argument("--config", required=True, help="YAML config (a demo config: configs/cpu-demo.yaml, configs/cpu-demo-diffusion.yaml).")
    parser.add_argument("--seeds", type=int, default=3, help="Post-training seeds per trained arm (0..K-1; default 3).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="a.b=VALUE", help="Override a config field (repeatable).")
    parser.add_argument("--report", type=Path, default=Path("runs/experiment/report"), help="Report folder.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        run_experiment(load_config(args.config, args.overrides), args.seeds, args.report)
    except (ConfigError, TrainDataError, *STOP_ERRORS) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
