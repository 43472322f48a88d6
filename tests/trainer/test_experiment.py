"""trainer.experiment: the photo as the sampling unit, across-seed intervals (hand-computed), and the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trainer.run_fixtures import REPO
from trainer.demo.corpus import write_standin_corpus
from trainer.demo.report import multiplicity, paired_change
from trainer.experiment import across_seeds

T975_1, T975_2 = 12.706204736, 4.302652730  # Student t 97.5% quantiles, 1 and 2 degrees of freedom


def _eval(values: dict[tuple[str, str], float], reward_shift: float = 0.0) -> dict:
    """An evaluate() result: per (photo, column) a PSNR, R = PSNR / 100 + shift."""
    rows = [{"id": f"{col}/x/{photo}", "column": col, "psnr": v, "ssim": 0.5, "reward": v / 100 + reward_shift} for (photo, col), v in values.items()]
    cols = sorted({c for _, c in values})
    avg = {m: sum(r[m] for r in rows) / len(rows) for m in ("psnr", "ssim", "reward")}
    return {"per_image": rows, "average": avg, "columns": {c: {} for c in cols}}


def test_paired_change_averages_a_photos_columns_before_the_interval():
    # photo a: changes +1 and +3 (mean 2); photo b: 0 and 0 (mean 0) -> photo mean 1, sd sqrt(2), n = 2 photos, 1 df
    pre = _eval({("a", "c1"): 20.0, ("a", "c2"): 20.0, ("b", "c1"): 20.0, ("b", "c2"): 20.0})
    post = _eval({("a", "c1"): 21.0, ("a", "c2"): 23.0, ("b", "c1"): 20.0, ("b", "c2"): 20.0})
    change = paired_change(post, pre)
    assert change["n"] == 2 and change["delta"] == pytest.approx(1.0)
    assert change["ci95"] == pytest.approx(T975_1 * 2 ** 0.5 / 2 ** 0.5)  # t * sd / sqrt(n) = 12.71 * 1.414 / 1.414


def test_across_seeds_is_the_t_interval_of_the_per_seed_photo_changes():
    photos = {(p, c): 20.0 for p in "abc" for c in ("c1", "c2")}
    pre = {s: _eval(photos) for s in ("id", "ood")}
    results = [{"arm": "pretrained", "seed": 0, "evals": pre}]
    shifts = {"sft_control": [0.0, 0.0, 0.0], "grpo_hard": [0.9, 1.0, 1.1], "grpo_random": [0.2, 0.2, 0.2]}
    for arm, per_seed in shifts.items():
        for seed, d in enumerate(per_seed):
            results.append({"arm": arm, "seed": seed, "evals": {s: _eval({k: v + d for k, v in photos.items()}, 0.0) for s in ("id", "ood")}})
    rows, arms, verdicts = across_seeds(results)
    a = arms["grpo_hard"]["id"]["across_seeds"]
    assert a["seeds"] == [0, 1, 2]
    assert a["delta_psnr_vs_pretrained"] == pytest.approx(1.0)
    assert a["ci95_psnr_vs_pretrained"] == pytest.approx(T975_2 * 0.1 / 3 ** 0.5)  # sd of (0.9, 1, 1.1) = 0.1
    assert a["delta_reward_vs_sft_control"] == pytest.approx(0.01)
    # grpo_random: the same change at every seed -> zero spread; sft_control against itself is omitted
    assert arms["grpo_random"]["ood"]["across_seeds"]["ci95_psnr_vs_sft_control"] == pytest.approx(0.0)
    assert "delta_psnr_vs_sft_control" not in arms["sft_control"]["id"]["across_seeds"]
    # GRPO on the hard subset against GRPO on a random one, seed by seed (IRPO Fig. 5): +0.7, +0.8, +0.9
    assert a["delta_psnr_vs_grpo_random"] == pytest.approx(0.8) and a["ci95_psnr_vs_grpo_random"] == pytest.approx(T975_2 * 0.1 / 3 ** 0.5)
    assert "delta_psnr_vs_grpo_random" not in arms["grpo_random"]["id"]["across_seeds"]
    assert len(rows) == 2 + 3 * 3 * 2
    assert "in-distribution: grpo_hard vs pretrained: PSNR improved (+1.000 dB per seed, 95% interval +-0.248 over 3 seeds)" in verdicts
    assert any(v.startswith("in-distribution: sft_control vs pretrained: PSNR no clear change") for v in verdicts)
    assert multiplicity(verdicts).startswith(f"{len(verdicts)} verdicts")


def test_one_seed_gives_no_verdict_beyond_an_infinite_interval():
    photos = {(p, "c1"): 20.0 for p in "ab"}
    results = [{"arm": "pretrained", "seed": 0, "evals": {s: _eval(photos) for s in ("id", "ood")}}]
    results += [{"arm": a, "seed": 0, "evals": {s: _eval({k: v + 5 for k, v in photos.items()}) for s in ("id", "ood")}} for a in ("sft_control", "grpo_hard", "grpo_random")]
    _, arms, verdicts = across_seeds(results)
    assert arms["grpo_hard"]["id"]["across_seeds"]["ci95_psnr_vs_pretrained"] == float("inf")
    assert not any("improved" in v or "worsened" in v for v in verdicts)


def test_experiment_cli_runs_every_arm_at_every_seed(tmp_path):
    data = write_standin_corpus(tmp_path / "data", n_train=3, n_test=2)
    runs = tmp_path / "runs"
    sets = {
        "data.root": data, "data.tasks": "[denoise]", "data.noise_sigmas": "[25.0]", "data.crop_size": 32,
        "pretrain.steps": 2, "pretrain.crop_size": 32, "pretrain.output": runs / "pretrain.safetensors", "policy.diffusion.pretrained": "null",
        "policy.diffusion.sampling_steps": 3, "policy.diffusion.rl.reward_steps": "[0]", "policy.diffusion.residual": "true",
        "mining.crop": 32, "mining.manifest": runs / "manifest.jsonl", "mining.subset": runs / "subset.json",
        "eval.crop": 32, "eval.samples": 2, "optim.max_steps": 1, "logging.dir": runs / "grpo", "logging.progress": "false",
        "checkpoint.dir": runs / "grpo" / "checkpoints", "watch.every_steps": 1, "watch.images": 2,
    }
    cmd = [sys.executable, "-m", "trainer.experiment", "--config", "configs/cpu-demo-diffusion.yaml", "--seeds", "2", "--report", str(tmp_path / "report")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["seeds"] == [0, 1] and results["unit"] == "photo" and results["protocol"]["stochastic_samples"] == 2
    assert {(r["arm"], r["seed"]) for r in results["per_seed"]} == {("pretrained", None)} | {(a, s) for a in ("sft_control", "grpo_hard", "grpo_random") for s in (0, 1)}
    for arm in ("grpo_hard", "grpo_random"):
        for split in ("id", "ood"):
            a = results["arms"][arm][split]["across_seeds"]
            for ref in ("pretrained", "sft_control"):
                for key in ("psnr", "reward", "psnr_sampled", "reward_sampled"):
                    assert f"delta_{key}_vs_{ref}" in a and a[f"ci95_{key}_vs_{ref}"] >= 0
    assert all(f"delta_{k}_vs_grpo_random" in results["arms"]["grpo_hard"][s]["across_seeds"] for k in ("psnr", "reward") for s in ("id", "ood"))
    md = (tmp_path / "report" / "results.md").read_text()
    assert "verdicts, each at 95%" in md and "PSNR vs grpo_random" in md
    # every GRPO run's reward-hacking watch is in the report, with its warnings (if any) in the log
    assert set(results["watch"]) == {f"{a}/{s}" for a in ("grpo_hard", "grpo_random") for s in (0, 1)}
    assert all(w["steps"] == [0, 1] and w["gold_pairs"] == 2 for w in results["watch"].values())
    assert "grpo_hard/1: reward-hacking watch" in done.stdout
    # the post-training seeds differ: the two GRPO runs of one arm end at different weights
    ids = [r for r in results["per_seed"] if r["arm"] == "grpo_hard" and r["split"] == "id"]
    assert ids[0]["psnr_sampled"] != ids[1]["psnr_sampled"] or ids[0]["reward"] != ids[1]["reward"]
