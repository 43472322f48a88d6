"""Supervised L1 pre-training: the starting model when no AdaIR checkpoint is at hand.

Trains the whole policy on its deterministic output (Beta means), so the backbone and the heads'
means start from a model that restores; AdamW with cosine decay, seeded crops and batches.
Writes pretrain.output (safetensors) and returns its path.

    python -m trainer.pretrain --config F
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from irpo_common.device import resolve_device
from trainer import cli_common
from trainer.config import TrainConfig
from trainer.data import build_train_dataset
from trainer.model import build_policy, save_policy


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = F.mse_loss(x.clamp(0, 1), y).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def pretrain(cfg: TrainConfig) -> Path:
    p = cfg.pretrain
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    start = "from " + str(cfg.model.checkpoint) if cfg.model.checkpoint else "from RANDOM initialisation"
    policy = build_policy(cfg.model).to(device).train()
    dataset = build_train_dataset(cfg.data, crop_size=p.crop_size)
    n = len(dataset)
    if n == 0:
        raise ValueError(f"empty training set (data.source={cfg.data.source}, data.root={cfg.data.root})")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=p.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(p.steps, 1))
    order = torch.Generator().manual_seed(cfg.seed)
    print(f"[pretrain] {p.steps} steps, batch {p.batch_size}, crop {dataset.crop_size}, {n} training pairs, {sum(q.numel() for q in policy.parameters())} parameters, {start}, device {device}")
    t0 = time.perf_counter()
    perm, pos, epoch = torch.randperm(n, generator=order), 0, 0
    window: list[tuple[float, float, float]] = []
    for step in range(1, p.steps + 1):
        idx = []
        while len(idx) < p.batch_size:
            if pos == n:
                epoch += 1
                dataset.set_epoch(epoch)
                perm, pos = torch.randperm(n, generator=order), 0
            idx.append(int(perm[pos]))
            pos += 1
        items = [dataset[i] for i in idx]
        x = torch.stack([it["degraded"] for it in items]).to(device)
        y = torch.stack([it["target"] for it in items]).to(device)
        out = policy.deterministic(x)
        loss = F.l1_loss(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        window.append((loss.item(), _psnr(out.detach(), y), _psnr(x, y)))
        if step % p.log_every == 0 or step == p.steps:
            k = len(window)
            l1, psnr, psnr_in = (sum(w[j] for w in window) / k for j in range(3))
            rate = step / (time.perf_counter() - t0)
            print(f"[pretrain] step {step}/{p.steps} L1 {l1:.4f} PSNR out {psnr:.2f} dB vs input {psnr_in:.2f} dB ({rate:.2f} steps/s, ETA {(p.steps - step) / rate:.0f} s)", flush=True)
            window.clear()
    path = save_policy(policy, p.output)
    print(f"[pretrain] wrote {path} after {time.perf_counter() - t0:.0f} s")
    return path


def main(argv: list[str] | None = None) -> None:
    args = cli_common.parser("Supervised L1 pre-training of the restoration policy.", weights=False).parse_args(argv)
    pretrain(cli_common.load(args))


if __name__ == "__main__":
    main()
