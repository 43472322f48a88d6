"""The diffusion demo's config and the report parts it adds (family-agnostic): the candidate grid with the
within-group reward spread, the run's spread summary, and curves of a run that logs the diffusion loss."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from tests.trainer.run_fixtures import REPO
from trainer.config import load_config
from trainer.demo.corpus import write_standin_corpus
from trainer.demo.report import candidates_grid, paired_change, plot_curves, verdict
from trainer.demo.run import group_spread
from trainer.policies import build_policy

CONFIG = REPO / "configs" / "cpu-demo-diffusion.yaml"
# the seed-2 ablation switches (docs/benchmarks.md), each a --set on the demo's config
ABLATIONS = {
    "gt_distance_reward": ["reward.weights.brisque=0"],
    "iqa_reward": ["reward.weights.psnr=0", "reward.weights.ssim=0", "reward.weights.task=0"],
    "no_adaptive_weights": ["policy.diffusion.rl.adaptive_weighting=false"],
    "final_reward_only": ["policy.diffusion.rl.reward_at=final"],
    "history_only": ["grpo.advantage=history"],
    "diffusion_loss_mix": ["policy.diffusion.rl.sft_coef=1"],
}


@pytest.mark.parametrize("overrides", [[], *ABLATIONS.values()], ids=["demo", *ABLATIONS])
def test_the_diffusion_demo_config_and_its_ablations_load(overrides):
    cfg = load_config(CONFIG, overrides)
    assert cfg.policy.kind == "diffusion" and cfg.policy_section.sampling_steps == 10
    assert str(cfg.pretrain.output).startswith("runs/demo-diffusion/")  # its own folders: the AdaIR demo's cache stays valid


def test_the_shipped_pretrained_unet_is_the_one_the_config_documents_and_loads_into_its_policy():
    # the config's comment names the sha256 of the weights its command writes (the bit-for-bit reproduction check)
    cfg = load_config(CONFIG)
    weights = REPO / cfg.policy_section.pretrained
    assert hashlib.sha256(weights.read_bytes()).hexdigest() in CONFIG.read_text()
    build_policy(cfg.with_policy_weights(weights).policy_section)  # every tensor of the config's U-Net shape, or WeightsError


def test_candidate_grid_scores_the_g_candidates_of_one_sample_call(tmp_path):
    data = write_standin_corpus(tmp_path / "data", n_train=1, n_test=2, size=(32, 32))
    cfg = load_config(CONFIG, [f"data.root={data}", "data.tasks=[denoise,lowlight]", "eval.crop=32",
                               "policy.diffusion.pretrained=null", "policy.diffusion.block_out_channels=[8,16]", "policy.diffusion.norm_num_groups=4",
                               "policy.diffusion.sampling_steps=3", "policy.diffusion.rl.reward_steps=[1]"])
    torch.manual_seed(0)
    policy = build_policy(cfg.policy_section).eval()  # RANDOM weights: the grid's content is not the point

    def brightness(out, target, degraded, task):
        return out.flatten(1).mean(1).tolist()

    rows = candidates_grid(cfg, policy, brightness, tmp_path / "candidates.png", rows=2)
    assert (tmp_path / "candidates.png").stat().st_size > 0
    assert [r["column"] for r in rows] == ["denoise_sigma15", "denoise_sigma25"]
    for r in rows:
        rewards = torch.tensor(r["rewards"])
        assert rewards.numel() == cfg.grpo.group_size and len(set(r["rewards"])) == cfg.grpo.group_size  # stochastic candidates
        assert r["std"] == pytest.approx(rewards.std().item()) and r["range"] == pytest.approx((rewards.max() - rewards.min()).item())
    assert rows == candidates_grid(cfg, policy, brightness, tmp_path / "again.png", rows=2)  # seeded by cfg.seed


def test_group_spread_and_curves_of_a_diffusion_run(tmp_path):
    rows = [{"step": i, "epoch": i / 4, "reward/mean": 0.5, "reward/group_std": s, "loss/total": 1.0, "loss/sft": 0.1, "kl": 0.0}
            for i, s in enumerate([0.01, 0.03])]
    assert group_spread(rows) == pytest.approx({"group_std": 0.02, "mean_reward": 0.5, "of_mean_reward": 0.04})
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot_curves({"grpo_hard": metrics}, tmp_path / "curves.png").stat().st_size > 0


def test_the_reward_change_is_paired_and_judged_like_the_psnr_change():
    pre = {"per_image": [{"id": f"i{k}", "column": "derain", "psnr": 20.0, "reward": r} for k, r in enumerate([0.40, 0.50, 0.45, 0.55])]}
    post = {"per_image": [dict(r, reward=r["reward"] + d) for r, d in zip(pre["per_image"], [0.020, 0.030, 0.025, 0.028])]}
    change = paired_change(post, pre, "reward")
    assert change["n"] == 4 and change["delta"] == pytest.approx(0.02575)
    assert verdict(change, "grpo_hard", "pretrained", "OOD", "mean R", "").startswith("OOD: grpo_hard vs pretrained: mean R improved (+0.026 per photo")
