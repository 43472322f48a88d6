"""Images per second for the full reward (all terms, reference given, task set), three ways:

1. in-process batched: reward_server.scorer.Scorer on one (N, 3, H, W) batch (and the same in float32);
2. over HTTP batched: a real `reward-server` subprocess on 127.0.0.1, RewardClient.score_batch (safetensors);
3. naive per-image loop: scikit-image PSNR/SSIM, lpips, CLIP and the aesthetic head one image at a time,
   always in float32 (what one would write without the service).

The service (1 and 2) runs in the precision of --precision (default: the service's 'auto').

Runs on RANDOM weights (the real ones cannot be downloaded here); timings do not depend on weight values.
Usage: .venv/bin/python -m benchmarks.bench_reward [--size 128] [--batch 16] [--clip-model ViT-B-32]
       [--candidates-per-reference 1] [--precision auto]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from irpo_common.device import resolve_device  # noqa: E402
from irpo_common.process import ManagedProcess, free_port  # noqa: E402
from irpo_common.tasks import TASKS  # noqa: E402
from reward_server import metrics  # noqa: E402
from reward_server.client import RewardClient  # noqa: E402
from reward_server.config import load_settings  # noqa: E402
from reward_server.models import load_models  # noqa: E402
from reward_server.scorer import Scorer, make_item  # noqa: E402
from reward_server.terms import Batch  # noqa: E402


def images(n: int, size: int, per_reference: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n restorations; each group of `per_reference` shares its reference, as G candidates do in GRPO."""
    rng = np.random.default_rng(seed)
    gt = np.repeat(rng.random((-(-n // per_reference), 3, size, size), dtype=np.float32), per_reference, axis=0)[:n]
    restored = np.clip(gt + 0.05 * rng.standard_normal(gt.shape, dtype=np.float32), 0, 1)
    return restored, gt


def interleaved_rates(fns: dict, n: int, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` images/s of each fn, run in turn so a changing machine load hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: n / t for name, t in best.items()}


def naive_loop(models, restored: np.ndarray, gt: np.ndarray, tasks: list[str]) -> list[dict]:
    """What one would write without batching: every term for one image at a time."""
    out = []
    with torch.inference_mode():
        for y, g, task in zip(restored, gt, tasks):
            yt, gtt = torch.from_numpy(y)[None].to(models.device), torch.from_numpy(g)[None].to(models.device)
            emb = Batch(models, torch.cat([yt, gtt]), None, None).clip_restored
            out.append({
                "psnr": peak_signal_noise_ratio(g.transpose(1, 2, 0), y.transpose(1, 2, 0), data_range=1.0),
                "ssim": structural_similarity(g.transpose(1, 2, 0), y.transpose(1, 2, 0), data_range=1.0, channel_axis=2),
                "lpips": models.lpips(yt, gtt, normalize=True).item(),
                "clip": (emb[0] * emb[1]).sum().item(),
                "aesthetic": models.aesthetic(emb[:1]).item(),
                "iqa": torch.softmax(100 * emb[:1] @ models.iqa_text.T, -1)[0, 0].item(),
                "task": metrics.task_terms(yt, gtt)[task].item(),
            })
    return out


def start_server(env: dict[str, str]) -> ManagedProcess:
    port = free_port()
    cmd = [sys.executable, "-m", "reward_server.cli", "--random-weights", "--port", str(port), "--log-level", "warning"]
    return ManagedProcess("reward-server", cmd, f"http://127.0.0.1:{port}", env=env).start(300)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clip-model", default="ViT-B-32")
    p.add_argument("--device", default="auto")
    p.add_argument("--candidates-per-reference", type=int, default=1, help="Restorations sharing one reference (GRPO: G = 4).")
    p.add_argument("--precision", default="auto", help="The service's precision (the naive loop is always float32).")
    args = p.parse_args()

    env = {**os.environ, "REWARD_SERVER_CLIP_MODEL": args.clip_model, "REWARD_SERVER_DEVICE": args.device,
           "REWARD_SERVER_MICRO_BATCH_SIZE": str(max(32, args.batch)), "REWARD_SERVER_PRECISION": args.precision}
    os.environ.update(env)
    settings = load_settings(None, random_weights=True)
    models = load_models(settings, resolve_device(settings.device))
    settings32 = load_settings(None, random_weights=True, precision="float32")
    naive_models = load_models(settings32, models.device)
    scorer, scorer32 = Scorer(models, settings), Scorer(naive_models, settings32)
    restored, gt = images(args.batch, args.size, args.candidates_per_reference)
    tasks = [TASKS[i % len(TASKS)] for i in range(args.batch)]
    rt, gtt = torch.from_numpy(restored), torch.from_numpy(gt)

    def in_process(scorer=scorer):
        items = [make_item(rt[i], gtt[i], None, task=tasks[i], weights=settings.weights, judge=None, settings=settings)
                 for i in range(args.batch)]
        scorer.score(items)

    with start_server(env) as server, RewardClient(server.url, retries=0) as client:  # idle while the other two run
        rates = interleaved_rates({
            "in_process_batched": in_process,
            "in_process_batched_float32": lambda: in_process(scorer32),
            "http_batched": lambda: client.score_batch(restored, gt, tasks=tasks),
            "naive_per_image_loop": lambda: naive_loop(naive_models, restored, gt, tasks),
        }, args.batch, args.repeats)

    load = os.getloadavg()[0]
    report = {
        "what": f"full reward at {args.size}x{args.size}, batch {args.batch} ({args.candidates_per_reference} per reference), CLIP {args.clip_model} (RANDOM weights), lpips-alex",
        "service_precision": models.precision, "naive_precision": naive_models.precision,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}, device {resolve_device(args.device)}",
        "load_average_1min_at_end": round(load, 2),
        "images_per_s": {k: round(v, 2) for k, v in rates.items()},
        "http_over_in_process": round(rates["http_batched"] / rates["in_process_batched"], 3),
        "http_over_naive": round(rates["http_batched"] / rates["naive_per_image_loop"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
