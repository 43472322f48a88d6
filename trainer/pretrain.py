"""Supervised training with the family's loss (policy.supervised_loss): pre-training, and the demo's SFT control arm.

pretrain() is the starting model when no pre-trained weights are at hand. The IRPO family trains the
whole policy on L1 of its deterministic output (Beta means), so the backbone and the heads' means
start from a model that restores; the diffusion family trains its U-Net with the standard diffusion
loss. Both on the same data and degradations, AdamW with cosine decay, seeded crops and batches.
Writes pretrain.output (safetensors of the whole policy, which the family's starting-weights field
loads) and returns its path. fit_supervised() is the loop itself, for any optimiser and batch order.

    python -m trainer.pretrain --config F
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel

from irpo_common.device import resolve_device
from trainer import cli_common
from trainer.config import TrainConfig
from trainer.data import build_train_dataset
from trainer.policies import Policy, build_policy, save_policy


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = F.mse_loss(x.clamp(0, 1), y).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def fit_supervised(policy: Policy, batch: Callable[[int], list[dict]], optimizer: torch.optim.Optimizer, steps: int, *,
                   schedule=None, grad_clip: float | None = None, log_every: int = 50, tag: str = "pretrain", seed: int = 0,
                   ema: EMAModel | None = None) -> None:
    """`steps` updates of policy.supervised_loss; batch(step) gives that step's items ({"degraded", "target"});
    `ema`, over policy.parameters(), is stepped after every update.

    Logs the mean loss since the last log and the deterministic output's PSNR on the logged step's batch.
    """
    device = next(policy.parameters()).device
    policy.train()
    draws = torch.Generator().manual_seed(seed)  # the diffusion loss's timesteps and noise
    t0 = time.perf_counter()
    window: list[float] = []
    for step in range(1, steps + 1):
        items = batch(step - 1)
        x = torch.stack([it["degraded"] for it in items]).to(device)
        y = torch.stack([it["target"] for it in items]).to(device)
        loss = policy.supervised_loss(x, y, draws).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if ema is not None:
            ema.step(policy.parameters())
        window.append(loss.item())
        if step % log_every == 0 or step == steps:
            with torch.no_grad():
                psnr = _psnr(policy.deterministic(x), y)
            rate = step / (time.perf_counter() - t0)
            print(f"[{tag}] step {step}/{steps} loss {sum(window) / len(window):.4f} PSNR out {psnr:.2f} dB vs input {_psnr(x, y):.2f} dB ({rate:.2f} steps/s, ETA {(steps - step) / rate:.0f} s)", flush=True)
            window.clear()


# clean_pair's flat levels stay below the haze's airlight (0.8-1, trainer/data/degradations.py haze), so a clean pair
# never copies a hazy input exactly; its darkest blends (weight 0.3 on the photo) reach the low-light inputs' exposure.
CLEAN_LEVEL_MAX, CLEAN_WEIGHT_MIN = 0.7, 0.3


def clean_pair(item: dict, g: torch.Generator) -> dict:
    """The item's target blended towards a random flat level, L + a (target - L) with L ~ U(0, 0.7) and a ~ U(0.3, 1),
    as both input and target: a clean crop of another exposure and contrast, which a restorer should leave alone."""
    level = CLEAN_LEVEL_MAX * float(torch.rand((), generator=g))
    weight = CLEAN_WEIGHT_MIN + (1 - CLEAN_WEIGHT_MIN) * float(torch.rand((), generator=g))
    clean = level + weight * (item["target"] - level)
    return item | {"degraded": clean, "target": clean}


def pretrain(cfg: TrainConfig) -> Path:
    p = cfg.pretrain
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    section = cfg.policy_section
    start = f"from {section.weights}" if section.weights else "from RANDOM initialisation"
    policy = build_policy(section).to(device).train()
    dataset = build_train_dataset(cfg.data, crop_size=p.crop_size)
    n = len(dataset)
    if n == 0:
        raise ValueError(f"empty training set (data.source={cfg.data.source}, data.root={cfg.data.root})")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=p.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(p.steps, 1))
    order = torch.Generator().manual_seed(cfg.seed)
    print(f"[pretrain] {cfg.policy.kind} policy, {p.steps} steps, batch {p.batch_size}, crop {dataset.crop_size}, {n} training pairs"
          f"{f' (clean pairs with probability {p.clean_fraction})' if p.clean_fraction else ''}, {sum(q.numel() for q in policy.parameters())} parameters, {start}, device {device}")
    t0 = time.perf_counter()
    state = {"perm": torch.randperm(n, generator=order), "pos": 0, "epoch": 0}
    clean = torch.Generator().manual_seed(cfg.seed + 1)  # its own stream: with clean_fraction 0 the batches are unchanged

    def batch(_step: int) -> list[dict]:
        # one permutation per pass; the next pass starts when this one is used up, with fresh crops
        idx = []
        while len(idx) < p.batch_size:
            if state["pos"] == n:
                state["epoch"] += 1
                dataset.set_epoch(state["epoch"])
                state["perm"], state["pos"] = torch.randperm(n, generator=order), 0
            idx.append(int(state["perm"][state["pos"]]))
            state["pos"] += 1
        items = [dataset[i] for i in idx]
        if p.clean_fraction:
            items = [clean_pair(it, clean) if float(torch.rand((), generator=clean)) < p.clean_fraction else it for it in items]
        return items

    ema = EMAModel(policy.parameters(), decay=p.ema_decay) if p.ema_decay else None
    fit_supervised(policy, batch, optimizer, p.steps, schedule=schedule, log_every=p.log_every, seed=cfg.seed, ema=ema)
    if ema is not None:
        ema.copy_to(policy.parameters())
    path = save_policy(policy, p.output)
    print(f"[pretrain] wrote {path}{f' (the EMA, decay {p.ema_decay})' if ema else ''} after {time.perf_counter() - t0:.0f} s")
    return path


def main(argv: list[str] | None = None) -> None:
    args = cli_common.parser("Supervised pre-training of the configured policy (L1 for irpo, the diffusion loss for diffusion).", weights=False).parse_args(argv)
    pretrain(cli_common.load(args))


if __name__ == "__main__":
    main()
