"""Does the pre-trained restorer restore? Pre-train a config (with --set overrides), evaluate it on the test photos
in distribution and OOD, and count the columns where it beats its degraded input (issue 20's starting-point check).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_starting_points --config configs/cpu-demo-diffusion.yaml \
        --set policy.diffusion.residual=true --out runs/bench/start

Prints one line per split: mean PSNR of the model and of the input, and the columns won; writes OUT/summary.json.
`--dev N` selects variants without the test photos: every Nth training photo by name (from the 2nd) becomes a dev photo,
never pre-trained on; the variant pre-trains on the other training photos and is evaluated on the dev photos (a demo
corpus root ROOT-devN with train/ and test/ holding copies; the test photos are not read).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from trainer.config import load_config
from trainer.demo.corpus import fetch
from trainer.evaluate import evaluate, input_baseline
from trainer.policies import build_policy
from trainer.pretrain import pretrain


def dev_root(root: Path, every: int) -> Path:
    """ROOT-devN: train/ = the training photos less every Nth by name (from the 2nd), test/ = those dev photos."""
    photos = sorted(p for p in (root / "train").iterdir() if p.is_file())
    dev = set(photos[1::every])
    out = root.with_name(f"{root.name}-dev{every}")
    want = {split: {p.name for p in photos if (p in dev) == (split == "test")} for split in ("train", "test")}
    if all((out / s).is_dir() and {q.name for q in (out / s).iterdir()} == want[s] for s in want):
        return out  # already built (another variant may be reading it)
    for split in want:
        shutil.rmtree(out / split, ignore_errors=True)
        (out / split).mkdir(parents=True, exist_ok=True)  # a variant started beside this one may build it too
    for p in photos:
        shutil.copy2(p, out / ("test" if p in dev else "train") / p.name)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dev", type=int, default=None, metavar="N", help="select on dev photos: every Nth training photo, held out of pre-training")
    p.add_argument("--weights", type=Path, default=None, help="evaluate these pre-trained weights instead of pre-training (e.g. a sampler change)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = args.overrides + [f"pretrain.output={args.out / 'model.safetensors'}"]
    cfg = load_config(args.config, overrides)
    if cfg.data.source == "demo":
        fetch(cfg.data.root)
    if args.dev is not None:
        if cfg.data.source != "demo":
            raise SystemExit("--dev needs data.source: demo (a corpus of clean photos)")
        cfg = load_config(args.config, overrides + [f"data.root={dev_root(Path(cfg.data.root), args.dev)}"])
    load, t0 = os.getloadavg(), time.perf_counter()
    weights = args.weights or pretrain(cfg)
    seconds = time.perf_counter() - t0
    policy = build_policy(cfg.with_policy_weights(weights).policy_section).eval()
    summary = {"config": args.config, "overrides": args.overrides, "split": f"dev{args.dev}" if args.dev else "test", "pretrain_seconds": seconds, "threads": torch.get_num_threads(),
               "load_average_start": load, "load_average_end": os.getloadavg()}
    for split in ("id", "ood"):
        res = evaluate(cfg, policy, ood=split == "ood")
        base = input_baseline(res)
        won = [c for c in res["columns"] if res["columns"][c]["psnr"] > base["columns"][c]["psnr"]]
        summary[split] = {"psnr": res["average"]["psnr"], "input_psnr": base["average"]["psnr"], "columns_won": won, "columns": len(res["columns"]),
                          "per_column": {c: [res["columns"][c]["psnr"], base["columns"][c]["psnr"]] for c in res["columns"]}}
        print(f"[start] {split}: model {res['average']['psnr']:.2f} dB vs input {base['average']['psnr']:.2f} dB; beats the input on "
              f"{len(won)} of {len(res['columns'])} columns ({', '.join(won)})")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"[start] pre-training {seconds:.0f} s at {torch.get_num_threads()} thread(s), load average {load[0]:.1f}; {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
