"""LoRA against full fine-tuning for the latent diffusion family (issue 21).

1. The real stable-diffusion-x4-upscaler U-Net configuration, built on the meta device (no memory, no
   download): parameters, checkpoint bytes and weight-sync bytes per update, full vs LoRA at ranks 4 and 32.
2. The tiny x4 folder (devtools/tiny_latent.py) on this CPU, each case in its own process so its peak RSS is
   its own: rollout time per candidate (B x G in one batched call), learner step time and peak memory,
   LoRA vs full, with and without gradient checkpointing; fp32 vs bf16 autocast |log ratio| before any update.

    python benchmarks/bench_lora.py [--cases all|meta|tiny]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# stabilityai/stable-diffusion-x4-upscaler unet/config.json (the fields that set the parameter count)
X4_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[256, 512, 512, 1024], cross_attention_dim=1024,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    in_channels=7, out_channels=4, layers_per_block=2, norm_num_groups=32, num_class_embeds=1000,
    only_cross_attention=[True, True, True, False], sample_size=128, use_linear_projection=True,
)


def meta_counts() -> dict:
    from diffusers import UNet2DConditionModel

    from trainer.config import DiffusionLoRAConfig
    from trainer.policies.diffusion.lora import add_lora

    out = {}
    with torch.device("meta"):
        full = sum(p.numel() for p in UNet2DConditionModel(**X4_UNET).parameters())
        out["full"] = {"trainable": full, "bytes_fp32": 4 * full}
        for rank in (4, 32):
            unet = UNet2DConditionModel(**X4_UNET)
            add_lora(unet, DiffusionLoRAConfig(rank=rank))
            n = sum(p.numel() for p in unet.parameters() if p.requires_grad)
            out[f"lora_r{rank}"] = {"trainable": n, "bytes_fp32": 4 * n, "fraction_of_full": n / full}
    return out


def tiny_case(folder: Path, lora: int, checkpointing: bool, precision: str = "fp32", b: int = 2, g: int = 4) -> dict:
    from trainer.config import DiffusionConfig
    from trainer.policies import optimizer_groups
    from trainer.policies.diffusion import build_diffusion_policy

    torch.set_num_threads(1)
    cfg = DiffusionConfig(pretrained=folder, sampling_steps=10, lora={"rank": lora}, gradient_checkpointing=checkpointing, precision=precision)
    policy = build_diffusion_policy(cfg).train()
    x = torch.rand(b, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    sample = policy.sample(x, g, torch.Generator().manual_seed(1))
    t_roll = time.perf_counter() - t0
    opt = torch.optim.AdamW(optimizer_groups(policy, 1e-4))
    t0 = time.perf_counter()
    ev = policy.evaluate(x, sample.trajectory)
    ratio_err = (ev.log_prob - sample.trajectory.log_prob).abs().max().item()
    ev.log_prob.mean().backward()
    opt.step()
    t_learn = time.perf_counter() - t0
    state = policy.state_dict()
    return {"lora_rank": lora, "gradient_checkpointing": checkpointing, "precision": precision, "rows": b * g,
            "rollout_s_per_candidate": t_roll / (b * g), "learner_step_s": t_learn, "max_abs_log_ratio_before_update": ratio_err,
            "trainable": sum(p.numel() for p in policy.parameters() if p.requires_grad), "state_bytes": sum(v.numel() * v.element_size() for v in state.values()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


CASES = [(0, False, "fp32"), (0, True, "fp32"), (4, False, "fp32"), (4, True, "fp32"), (4, False, "bf16"), (4, False, "fp16")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", choices=["all", "meta", "tiny"], default="all")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one tiny case as JSON args
    args = ap.parse_args()
    if args.one:
        a = json.loads(args.one)
        print(json.dumps(tiny_case(Path(a["folder"]), a["lora"], a["ckpt"], a["precision"])))
        return
    print("RANDOM weights throughout: sizes and timings only.")
    if args.cases in ("all", "meta"):
        print(json.dumps({"x4_unet_meta": meta_counts()}, indent=1))
    if args.cases in ("all", "tiny"):
        from devtools.tiny_latent import build_x4

        with tempfile.TemporaryDirectory() as tmp:
            folder = build_x4(Path(tmp) / "x4")
            for lora, ckpt, precision in CASES:
                one = json.dumps({"folder": str(folder), "lora": lora, "ckpt": ckpt, "precision": precision})
                res = subprocess.run([sys.executable, __file__, "--one", one], capture_output=True, text=True, check=True)
                print(res.stdout.strip().splitlines()[-1])
    print("load:", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
