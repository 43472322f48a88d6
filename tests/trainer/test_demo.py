"""The README's main job (trainer.demo) end to end on a shrunk setting, its results.json layout, and its verdicts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trainer.run_fixtures import REPO
from trainer.demo.corpus import write_standin_corpus
from trainer.demo.report import paired_change, verdict

ARMS = {"pretrained", "sft_control", "grpo_hard", "grpo_random"}


def _results(psnrs: list[float]) -> dict:
    return {"per_image": [{"id": f"img{i}", "column": "denoise", "psnr": p, "ssim": 0.5} for i, p in enumerate(psnrs)]}


@pytest.mark.parametrize(("shift", "word"), [
    ([0.4, 0.6, 0.5, 0.5, 0.45, 0.55], "improved"),
    ([-0.4, -0.6, -0.5, -0.5, -0.45, -0.55], "worsened"),
    ([1.0, -0.9, 0.8, -1.1, 0.9, -0.6], "no clear change"),  # mean +0.02 dB, spread ~1 dB
])
def test_verdict_needs_a_change_beyond_the_image_to_image_spread(shift, word):
    pre = [20.0, 22.0, 25.0, 18.0, 30.0, 21.0]
    change = paired_change(_results([p + s for p, s in zip(pre, shift)]), _results(pre))
    assert change["n"] == 6 and change["delta"] == pytest.approx(sum(shift) / 6)
    text = verdict(change, "grpo_hard", "pretrained", "in-distribution")
    assert text.startswith(f"in-distribution: grpo_hard vs pretrained: PSNR {word} (")
    assert "per photo" in text and "over 6 photos" in text


def test_paired_change_refuses_different_test_images():
    with pytest.raises(ValueError, match="same test images"):
        paired_change(_results([20.0, 21.0]), _results([20.0, 21.0, 22.0]))


def test_demo_runs_end_to_end_and_writes_the_report(tmp_path):
    """A stand-in corpus (reused as the fetched one), pre-training, mining, the SFT control and both GRPO arms on a
    local Ray against one local reward service, evaluation and the report, with every stage shrunk."""
    data = write_standin_corpus(tmp_path / "data", n_train=3, n_test=2)
    runs = tmp_path / "runs"
    sets = {
        "data.root": data, "data.tasks": "[denoise,lowlight]", "data.crop_size": 32,
        "pretrain.steps": 3, "pretrain.crop_size": 32, "pretrain.output": runs / "pretrain.safetensors",
        "mining.crop": 32, "mining.manifest": runs / "manifest.jsonl", "mining.subset": runs / "subset.json",
        "eval.crop": 32, "optim.max_steps": 2, "logging.dir": runs / "grpo", "logging.progress": "false",
        "checkpoint.dir": runs / "grpo" / "checkpoints", "watch.every_steps": 1, "watch.images": 2,
    }
    cmd = [sys.executable, "-m", "trainer.demo", "--config", "configs/cpu-demo.yaml", "--report", str(tmp_path / "report")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for stage in ("supervised pre-training", "mining the hard subset", "SFT control", "GRPO on local Ray: grpo_hard", "GRPO on local Ray: grpo_random", "evaluating the arms"):
        assert f"==== {stage}" in out
    assert "ran on RANDOM weights" in out and "STAND-IN images" in out
    report = tmp_path / "report"
    assert {p.name for p in report.iterdir()} == {"results.md", "results.json", "curves.png", "grid.png", "notes.json", "config.json",
                                                  "candidates_pretrained.png", "candidates_grpo_hard.png"}

    results = json.loads((report / "results.json").read_text())
    assert set(results["arms"]) == ARMS
    for arm, splits in results["arms"].items():
        assert set(splits) == {"id", "ood"}
        for split in splits.values():
            keys = {"psnr", "ssim", "reward", "psnr_sampled", "ssim_sampled", "reward_sampled"}  # eval.samples: 4
            compared = ("psnr", "reward", "psnr_sampled", "reward_sampled")
            for ref in ("pretrained",) * (arm != "pretrained") + ("sft_control",) * arm.startswith("grpo_") + ("grpo_random",) * (arm == "grpo_hard"):
                keys |= {f"{kind}_{m}_vs_{ref}" for kind in ("delta", "ci95") for m in compared}
            assert set(split) - {"columns", "per_image"} == keys
            assert 0.0 <= split["reward"] <= 1.0
    assert set(results["within_group_spread"]) == {"grpo_hard", "grpo_random"}
    # the PSNR thresholds come from the data (5th-95th percentiles of the manifest), reach the service and the report
    psnrs = sorted(json.loads(line)["psnr"] for line in (runs / "manifest.jsonl").read_text().splitlines())
    low, high = results["psnr_range_db"]
    assert psnrs[0] <= low < high <= psnrs[-1]
    config = json.loads((report / "config.json").read_text())
    assert config["reward"]["psnr_range_db"] == [low, high] and config["reward"]["psnr_range_percentiles"] is None
    assert f"PSNR term thresholds: [{low}, {high}] dB" in out
    subset_random = json.loads((runs / "subset_random.json").read_text())
    assert subset_random["selection"] == "random"
    assert len(subset_random["ids"]) == len(json.loads((runs / "subset.json").read_text())["ids"])

    notes = json.loads((report / "notes.json").read_text())
    assert {a: n["updates"] for a, n in notes["arms"].items()} == {"pretrained": 0, "sft_control": 2, "grpo_hard": 2, "grpo_random": 2}
    assert "lpips" in notes["random_weights"] and notes["reward_terms"]["lpips"] == {"weight": 0.0, "random_weights": True}
    table = (report / "results.md").read_text()
    assert "| input (degraded) |" in table and "| grpo_random |" in table and "grpo_hard vs sft_control" in table
    assert "over 2 photos" in table and "verdicts, each at 95%" in table  # the photo is the unit; multiplicity stated
    # the reward-hacking watch of each GRPO arm: before the first step and after each of the 2
    for arm in ("grpo_hard", "grpo_random"):
        watch = results["watch"][arm]
        assert watch["steps"] == [0, 2] and watch["points"] == 3 and watch["gold_pairs"] == 2
        assert set(watch["change"]) == {"reward", "psnr", "ssim"} and isinstance(watch["warnings"], list)
        assert f"| {arm} | 0-2 (3 points) | 2 |" in table
        assert f"[demo] {arm}: reward-hacking watch over 2 held-out pairs" in out
    assert "python -m trainer.experiment --config configs/cpu-demo.yaml --seeds 3" in table and results["needs_seeds"] in table
