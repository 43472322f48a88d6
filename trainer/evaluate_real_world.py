"""Real-world face sets without ground truth (LFW-Test, WebPhoto-Test: data.face.real_world), scored by the reward
service's no-reference terms only (CLIP-IQA, aesthetic, the human-preference model, BRISQUE, NIQE, PIQE where the
size allows): with no reference sent, every metric the service computes is a no-reference one.

Each face is restored whole (cut to a multiple of 16) by the policy's deterministic output; the service scores the
restored face and the input itself with no reference, so PSNR, SSIM, LPIPS and identity do not exist here.
"R_nr" is R from those terms with the trainer's weights (reward.weights), renormalised as any absent term is.
"""

from __future__ import annotations

import time

import torch

from irpo_common.reward_spec import combine_rewards
from reward_server.client import RewardClient
from trainer.config import TrainConfig
from trainer.data import read_image
from trainer.data.datasets import cut_to_multiple
from trainer.data.sources import real_world_sets
from trainer.inference import restore
from trainer.policies import Policy


def score_no_reference(client: RewardClient, cfg: TrainConfig, image: torch.Tensor) -> dict[str, float]:
    """The no-reference raw metrics the service computed for one (3, H, W) image, and R_nr."""
    item = client.score_batch(image.clamp(0, 1)[None], tasks=["face"])[0]
    row = dict(item.metrics)
    try:
        row["reward_nr"], _ = combine_rewards(item.terms, cfg.reward.weights)
    except ValueError:  # no weighted no-reference term: there is no R to report, not a made-up one
        pass
    return row


def evaluate_real_world(cfg: TrainConfig, policy: Policy, client: RewardClient) -> dict:
    """{set name: {"n", "metrics": {name: mean}, "input": {name: mean}, "per_image": [{"id", name..., "input_<name>"...}]}}."""
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    out = {}
    for name, files in real_world_sets(cfg.data).items():
        t0, rows = time.perf_counter(), []
        for path in files:
            x = cut_to_multiple(read_image(path))
            restored = restore(policy, x[None].to(device), cfg.eval.tile, cfg.eval.tile_overlap)[0].cpu()
            row = {"id": path.stem, **score_no_reference(client, cfg, restored)}
            row |= {f"input_{k}": v for k, v in score_no_reference(client, cfg, x).items()}
            rows.append(row)
        keys = [k for k in rows[0] if k != "id" and all(k in r for r in rows)]
        means = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
        out[name] = {"n": len(rows), "metrics": {k: v for k, v in means.items() if not k.startswith("input_")},
                     "input": {k.removeprefix("input_"): v for k, v in means.items() if k.startswith("input_")},
                     "per_image": rows, "seconds": time.perf_counter() - t0}
    policy.train(was_training)
    return out
