"""bf16 vs fp16 autocast against float32: the per-step log-densities of the diffusion family (issue 21, item 6).

flow_grpo's FAQ prefers fp16 over bf16 for log-prob accuracy. On each tiny RANDOM latent folder
(devtools/tiny_latent.py: x4 upscaler, LDM-SR, ControlNet) a trajectory is sampled in float32, then its
per-step log-densities are re-evaluated with the denoiser under policy.diffusion.precision fp32 / bf16 /
fp16 autocast (the step maths stay float32 either way). The difference to the float32 log-density on the
sampled steps is the log ratio a PPO update would see at ratio 1 if sampling ran in float32 and training in
autocast (or the rounding error either side adds); rl.clip_eps clips it at 1e-4 .. 1e-3 per step. Also the
gradient of the mean log-density (the scale of the PPO surrogate's, logprob_reduction 'mean') under each autocast
against float32: its relative error, and the share of the float32 gradient's non-zero elements that come out
exactly zero (underflow), also for fp16 with the learner's loss scaling (torch.amp.GradScaler's initial 2^16).

CPU autocast runs the CPU's kernels, not a GPU's; the rounding of the dtype (bf16: 8 mantissa bits, fp16: 11)
is the same, so the order of the error carries over, the exact figures do not.

    python benchmarks/bench_precision.py [--steps 10] [--candidates 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# kind -> (output_scale, input side): the super-resolution models restore a 4x smaller input
KINDS = {"x4": (4, 16), "ldm_sr": (4, 16), "controlnet": (1, 32)}
PRECISIONS = ("fp32", "bf16", "fp16")


def measure(kind: str, folder: Path, steps: int, candidates: int, images: int = 2) -> dict:
    from trainer.config import DiffusionConfig
    from trainer.policies.diffusion import build_diffusion_policy

    scale, side = KINDS[kind]
    x = torch.rand(images, 3, side, side, generator=torch.Generator().manual_seed(0))
    policies = {p: build_diffusion_policy(DiffusionConfig(pretrained=folder, output_scale=scale, sampling_steps=steps, precision=p)).eval()
                for p in PRECISIONS}
    with torch.no_grad():
        traj = policies["fp32"].sample(x, candidates, torch.Generator().manual_seed(1)).trajectory
        logp = {p: policy.evaluate(x, traj).log_prob for p, policy in policies.items()}
    grads = {p: gradient(policy, x, traj) for p, policy in policies.items()}
    out = {"kind": kind, "rows": images * candidates, "stochastic_steps": int(traj.log_prob.shape[1]),
           "abs_log_p_fp32_mean": logp["fp32"].abs().mean().item(), "grad_fp32_abs_mean": grads["fp32"].abs().mean().item()}
    nonzero = grads["fp32"] != 0

    def underflow(g: torch.Tensor) -> float:
        return (nonzero & (g == 0)).float().sum().item() / nonzero.sum().item()

    for p in PRECISIONS:
        diff = (logp[p] - logp["fp32"]).abs()
        out[p] = {"max_abs_vs_fp32": diff.max().item(), "mean_abs_vs_fp32": diff.mean().item(),
                  "max_abs_log_ratio_vs_sampled": (logp[p] - traj.log_prob).abs().max().item(),
                  "grad_rel_err_vs_fp32": ((grads[p] - grads["fp32"]).norm() / grads["fp32"].norm()).item(),
                  "grad_underflow_share": underflow(grads[p])}
    scaled = gradient(policies["fp16"], x, traj, 2.0**16)
    out["fp16_loss_scaled"] = {"grad_rel_err_vs_fp32": ((scaled - grads["fp32"]).norm() / grads["fp32"].norm()).item(), "grad_underflow_share": underflow(scaled)}
    return out


def gradient(policy, x, traj, loss_scale: float = 1.0) -> torch.Tensor:
    """The flat gradient of the mean per-step log-density over the trainable parameters (backward of the scaled loss, unscaled)."""
    policy.zero_grad(set_to_none=True)
    (policy.evaluate(x, traj).log_prob.mean() * loss_scale).backward()
    return torch.cat([p.grad.flatten() for p in policy.parameters() if p.requires_grad and p.grad is not None]) / loss_scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="DDIM sampling steps (the last is noiseless).")
    ap.add_argument("--candidates", type=int, default=4, help="Candidates per image (G); 2 images.")
    args = ap.parse_args()
    from devtools.tiny_latent import BUILDERS

    torch.set_num_threads(1)
    print("RANDOM weights (tiny folders): the log-density error of the dtype, no quality.")
    print(f"CPU bf16 native: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            print(json.dumps(measure(kind, BUILDERS[kind](Path(tmp) / kind), args.steps, args.candidates)), flush=True)
    print("load:", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
