"""What a U-Net shape costs per call: the diffusion family's deterministic output (one sampling_steps chain) on the
evaluation crop, for the config and for each variant (--variant 'NAME: KEY=VALUE; KEY=VALUE'), interleaved, best of
--repeats, as a ratio to the config's own U-Net (issue 20: a starting point must keep the GRPO arms' and evaluations'
cost within about 1.5x). Random weights: only the time matters.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_unet_cost --config configs/cpu-demo-diffusion.yaml \
        --variant "wide: policy.diffusion.block_out_channels=[16,48,96]"
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from trainer.config import load_config
from trainer.policies import build_policy


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--variant", action="append", default=[], help="'NAME: KEY=VALUE; KEY=VALUE' config overrides")
    p.add_argument("--batch", type=int, default=4, help="images per call (the rollout's images x G, or the evaluation's 1)")
    p.add_argument("--crop", type=int, default=None, help="px; default eval.crop (the GRPO rollouts use data.crop_size)")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    variants = {"config": []} | {v.split(":", 1)[0].strip(): [o.strip() for o in v.split(":", 1)[1].split(";") if o.strip()] for v in args.variant}
    policies = {name: build_policy(load_config(args.config, [*o, "policy.diffusion.pretrained=null"]).policy_section).eval()
                for name, o in variants.items()}
    cfg = load_config(args.config)
    size = args.crop or cfg.eval.crop or cfg.data.crop_size  # one input for every variant: only the U-Net differs
    x = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    best = dict.fromkeys(policies, float("inf"))
    load = os.getloadavg()
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, policy in policies.items():
                t0 = time.perf_counter()
                policy.deterministic(x)
                best[name] = min(best[name], time.perf_counter() - t0)
    for name, policy in policies.items():
        n = sum(q.numel() for q in policy.parameters())
        print(f"[cost] {name}: {n / 1e6:.2f} M parameters, {best[name] * 1000:.0f} ms per {x.shape[0]}-image chain at {x.shape[-1]} px, "
              f"{best[name] / best['config']:.2f}x the config's")
    print(f"[cost] {torch.get_num_threads()} thread(s), load average {load[0]:.1f} -> {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
