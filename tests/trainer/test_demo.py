"""The README's main job (trainer.demo) end to end on a shrunk setting, and its report's verdicts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trainer.run_fixtures import REPO
from trainer.data.demo_corpus import write_standin_corpus
from trainer.demo_report import verdict


def _results(psnrs: list[float]) -> dict:
    per_image = [{"id": f"img{i}", "column": "denoise", "psnr": p, "ssim": 0.5} for i, p in enumerate(psnrs)]
    return {"average": {"psnr": sum(psnrs) / len(psnrs), "ssim": 0.5}, "per_image": per_image}


@pytest.mark.parametrize(("shift", "word"), [
    ([0.4, 0.6, 0.5, 0.5, 0.45, 0.55], "improved"),
    ([-0.4, -0.6, -0.5, -0.5, -0.45, -0.55], "worsened"),
    ([1.0, -0.9, 0.8, -1.1, 0.9, -0.6], "did not clearly change"),  # mean +0.02 dB, spread ~1 dB
])
def test_verdict_needs_a_change_beyond_the_image_to_image_spread(shift, word):
    pre = [20.0, 22.0, 25.0, 18.0, 30.0, 21.0]
    text = verdict(_results(pre), _results([p + s for p, s in zip(pre, shift)]), "in-distribution")
    assert text.startswith(f"in-distribution: GRPO post-training {word} the average PSNR")
    assert "over 6 images" in text


def test_demo_runs_end_to_end_and_writes_the_report(tmp_path):
    """Photos (a stand-in corpus, reused as the fetched one), pre-training, mining, GRPO on a local Ray
    against a local reward service, evaluation and the report, with every stage shrunk."""
    data = write_standin_corpus(tmp_path / "data", n_train=3, n_test=2)
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*.png"))
    (data / "corpus.json").write_text(json.dumps({"short_side": 256, "files": files, "debian_packages": True, "problems": []}))
    runs = tmp_path / "runs"
    sets = {
        "data.root": data, "data.tasks": "[denoise,lowlight]", "data.crop_size": 32,
        "pretrain.steps": 3, "pretrain.crop_size": 32, "pretrain.output": runs / "pretrain.safetensors",
        "mining.crop": 32, "mining.manifest": runs / "manifest.jsonl", "mining.subset": runs / "subset.json",
        "eval.crop": 32, "optim.max_steps": 2, "logging.dir": runs / "grpo", "logging.progress": "false",
        "checkpoint.dir": runs / "grpo" / "checkpoints",
    }
    cmd = [sys.executable, "-m", "trainer.demo", "--config", "configs/cpu-demo.yaml", "--report", str(tmp_path / "report")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for stage in ("supervised pre-training", "mining the hard subset", "GRPO post-training on local Ray", "evaluating the post-trained policy"):
        assert f"==== {stage}" in out
    assert "ran on RANDOM weights" in out and "GRPO post-training" in out
    report = tmp_path / "report"
    assert {p.name for p in report.iterdir()} == {"results.md", "results.json", "curves.png", "grid.png", "notes.json"}
    results = json.loads((report / "results.json").read_text())
    assert set(results) == {"in_distribution", "ood"}
    assert all(set(r) == {"pre-trained", "post-trained"} for r in results.values())
    notes = json.loads((report / "notes.json").read_text())
    assert notes["grpo_steps"] == 2 and "lpips" in notes["random_weights"]
    assert notes["no_reference_terms"]["brisque"].startswith("parameters shipped in brisque 0.2.0")
    assert "no-reference term brisque (weight 0.15): parameters shipped in brisque 0.2.0" in out
    table = (report / "results.md").read_text()
    assert "| input (degraded) |" in table and "| post-trained |" in table
