"""Policy rollout: B images x G candidates as one batched sample() call vs G sequential calls, and
what the CPU offers on top (channels_last, a bfloat16 encoder pass), in interleaved arms.

    .venv/bin/python -m benchmarks.bench_rollout [--presets tiny paper] [--reps 3] [--threads 2]
        [--variants float32 channels_last bf16_encoder]

Prints a markdown table (median wall time per rollout, speed-up over G sequential float32 calls)
and parameter counts, then the encoder's share of one call and the speed-up it bounds (`ceiling`). Every arm of a preset runs in turn within each repetition, so a changing
machine load hits them alike. `bf16_encoder` runs the encoder (features shared by the G candidates)
under torch.autocast(bfloat16): the table gives how far the sampled log-probs then are from the
float32 learner's log-probs of the same actions (the PPO ratio at the first update, which must be 1).
Random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics

import torch

from devtools.timing import synced_seconds
from irpo_common.device import resolve_device
from trainer.model import build_policy, model_preset


@contextlib.contextmanager
def variant(policy, x: torch.Tensor, name: str):
    """The policy and input set up for one arm, restored afterwards."""
    if name == "channels_last":
        policy.to(memory_format=torch.channels_last)
        try:
            yield x.contiguous(memory_format=torch.channels_last)
        finally:
            policy.to(memory_format=torch.contiguous_format)
    elif name == "bf16_encoder":
        encode = policy.backbone.encode

        def bf16_encode(image):
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return tuple(f.float() for f in encode(image))

        policy.backbone.encode = bf16_encode
        try:
            yield x
        finally:
            del policy.backbone.encode  # back to the class's method
    else:
        yield x


def logprob_gap(policy, x: torch.Tensor, group: int) -> float:
    """Largest |log-prob recorded by a bf16-encoder rollout - float32 log-prob of the same actions|."""
    with variant(policy, x, "bf16_encoder") as xv:
        s = policy.sample(xv, group, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ev = policy.evaluate_actions(x.repeat_interleave(group, 0), s.actions)
    return float((s.log_prob - ev.log_prob).abs().max())


def ceiling(name: str, encoder_s: float, call_s: float, group: int) -> str:
    """What batching can gain where a decoder row costs the same in any batch (a CPU: its convolutions
    are throughput-bound): only the encoder pass, shared by the G candidates, is saved.
    G sequential calls cost G (E + D); the batched call E + G D."""
    share = encoder_s / call_s
    best = group / (share + group * (1 - share))
    return (f"{name}: encoder {encoder_s:.2f} s of a {call_s:.2f} s call ({share:.0%}); with the decoder rows' cost unchanged "
            f"by batching, the batched call can be at most {best:.2f}x faster than {group} sequential calls")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    ap.add_argument("--batch", type=int, default=4, help="B images")
    ap.add_argument("--group", type=int, default=4, help="G candidates per image")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--variants", nargs="+", default=["float32"], choices=["float32", "channels_last", "bf16_encoder"])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, {args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}; "
          f"RANDOM weights (timing only); load average at start {os.getloadavg()}")
    print(f"\n| preset | parameters (backbone + heads) | variant | batched B={args.batch} x G={args.group} | "
          f"{args.group} sequential float32 calls of B={args.batch} | speed-up | max log-prob gap |")
    print("|---|---|---|---|---|---|---|")
    ceilings = []
    for name in args.presets:
        torch.manual_seed(0)
        policy = build_policy(model_preset(name)).to(device).eval()
        x = torch.rand(args.batch, 3, args.size, args.size, device=device)
        gen = torch.Generator().manual_seed(0)
        policy.sample(x[:1, :, :64, :64], 1, generator=gen)  # warm-up (allocator, kernels)
        batched = {v: [] for v in args.variants}
        sequential, encoder = [], []
        for _ in range(args.reps):
            sequential.append(synced_seconds(lambda: [policy.sample(x, 1, generator=gen) for _ in range(args.group)], device))
            with torch.no_grad():
                encoder.append(synced_seconds(lambda: policy.backbone.encode(x), device))
            for v in args.variants:
                with variant(policy, x, v) as xv:
                    batched[v].append(synced_seconds(lambda: policy.sample(xv, args.group, generator=gen), device))
        s = statistics.median(sequential)
        nb = sum(p.numel() for p in policy.backbone_parameters())
        nh = sum(p.numel() for p in policy.head_parameters())
        for v in args.variants:
            b = statistics.median(batched[v])
            gap = f"{logprob_gap(policy, x, args.group):.2e}" if v == "bf16_encoder" else "0 (float32)"
            print(f"| {name} | {nb / 1e6:.3f} M + {nh / 1e6:.3f} M | {v} | {b:.2f} s | {s:.2f} s | {s / b:.2f}x | {gap} |", flush=True)
        ceilings.append(ceiling(name, statistics.median(encoder), s / args.group, args.group))
    print("\n" + "\n".join(ceilings))
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
