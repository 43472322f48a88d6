"""Paper-style evaluation (IRPO Table 2 form): per-column PSNR/SSIM and their average.

Columns are the tasks (denoising split per sigma) of the in-distribution test set, or of the
OOD set. The policy of either family runs deterministically (policy.deterministic); images are cut to multiples of 16 by
the loader (or centre-cropped to eval.crop) and restored whole or in tiles (eval.tile). Metrics follow eval.convention
(trainer/metrics.py).

    python -m trainer.evaluate --config F [--weights W] [--ood] [--output runs/eval/name]

W may be a checkpoint's policy.safetensors (live weights) or, with learner.ema_decay, its ema.safetensors (the EMA
of the trained weights); a LoRA run is evaluated through `python -m trainer.export [--ema]` and its folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainer import cli_common
from trainer.config import TrainConfig
from trainer.data import build_eval_sets
from trainer.face_identity import IdentityMetric
from trainer.inference import restore
from trainer.metrics import at_size, psnr_ssim
from trainer.policies import Policy

# IRPO's Table 2 averages five columns, denoising at sigma 25 only; our default denoises at
# 15/25/50, so the average over all columns is not comparable to its 31.03 / 30.20 dB.
TABLE2_COLUMNS = ("denoise_sigma25", "derain", "dehaze", "deblur", "lowlight")


def photo_of(image_id: str) -> str:
    """The photo an evaluation image was made from (its ids end with the clean image's stem): the sampling unit."""
    return image_id.rsplit("/", 1)[-1]


def column_average(columns: dict) -> dict:
    """Mean of the column means of psnr, ssim and every other metric every column has (reward, identity, lpips, *_sampled)."""
    keys = [k for k in next(iter(columns.values())) if k != "n" and all(k in c for c in columns.values())]
    return {m: sum(c[m] for c in columns.values()) / len(columns) for m in keys}


def table2_average(columns: dict) -> dict | None:
    """The mean over TABLE2_COLUMNS, comparable to IRPO's Table 2; None unless all five were evaluated."""
    if not all(c in columns for c in TABLE2_COLUMNS):
        return None
    return column_average({c: columns[c] for c in TABLE2_COLUMNS})


# (restored (N, 3, H, W) of one image, target (3, H, W), degraded (3, H, W), task) -> N rewards
RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], list[float]]
# the same arguments -> N dicts of named metrics (e.g. the face task's R and the reward service's LPIPS, one request)
MeasureFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], list[dict[str, float]]]


def evaluate(cfg: TrainConfig, policy: Policy, ood: bool = False, reward: RewardFn | None = None, measure: MeasureFn | None = None) -> dict:
    """{"convention", "ood", "columns": {col: {"psnr", "ssim", "n"}}, "average": {"psnr", "ssim"},
    "average_table2": {"psnr", "ssim"} or None, "per_image": [{"id", "column", "psnr", "ssim",
    "input_psnr", "input_ssim"}], "seconds"}.

    The averages are means of the column means (each column weighs the same, as in the paper);
    average_table2 over IRPO's five Table 2 columns only (None when they were not all evaluated).
    With `reward` (RewardFn: N restorations of one image -> N rewards), every image, column and the average also get
    "reward"; `measure` (MeasureFn: the same -> N dicts of named metrics) likewise gets its metrics. The face task's images also get "identity"
    (trainer/face_identity.py, eval.identity_*), and the result says which network computed it ("identity_network"),
    on random weights or not. With eval.samples = S > 0 every metric also gets *_sampled: the mean over S stochastic
    samples of the image (policy.sample, the sampler GRPO trains), drawn from a generator seeded by data.seed and the
    image's position, so every arm sees the same draws. Every row names its photo (photo_of), the sampling unit.
    """
    t0 = time.perf_counter()
    e = cfg.eval
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    columns, per_image = {}, []
    identity = IdentityMetric(e.identity_arch, e.identity_weights, device) if "face" in cfg.data.tasks else None
    for c, (column, dataset) in enumerate(build_eval_sets(cfg.data, ood=ood, crop=e.crop).items()):
        rows = []
        for i in range(len(dataset)):
            item = dataset[i]
            x = item["degraded"][None].to(device)
            out = restore(policy, x, e.tile, e.tile_overlap)[0]
            in_psnr, in_ssim = psnr_ssim(at_size(item["degraded"], item["target"].shape[-2:]), item["target"], e.convention, e.crop_border)
            scores, of_input = _scores(out[None], item, e, reward, measure, identity)
            row = {"id": item["id"], "photo": photo_of(item["id"]), "column": column, **scores[0],
                   "input_psnr": in_psnr, "input_ssim": in_ssim, **of_input}
            if e.samples:
                gen = torch.Generator().manual_seed(cfg.data.seed * 1_000_003 + int(ood) * 10_007 + c * 1_009 + i)
                with torch.no_grad():
                    draws = policy.sample(x, e.samples, generator=gen).images.clamp(0, 1).cpu()
                per_draw, _ = _scores(draws, item, e, reward, measure, identity)
                row |= {f"{m}_sampled": sum(d[m] for d in per_draw) / len(per_draw) for m in per_draw[0]}
            rows.append(row)
        per_image += rows
        metrics = [k for k in rows[0] if k not in ("id", "photo", "column") and not k.startswith("input_")]
        columns[column] = {m: sum(r[m] for r in rows) / len(rows) for m in metrics} | {"n": len(rows)}
    policy.train(was_training)
    if not columns:
        raise ValueError(f"no evaluation images for tasks {cfg.data.tasks} under {cfg.data.root}")
    return {
        "convention": e.convention,
        "ood": ood,
        "columns": columns,
        "average": column_average(columns),
        "average_table2": table2_average(columns),
        "per_image": per_image,
        "identity_network": identity.describe() if identity is not None else None,
        "seconds": time.perf_counter() - t0,
    }


def _scores(outs: torch.Tensor, item: dict, e, reward: RewardFn | None, measure: MeasureFn | None,
            identity: IdentityMetric | None) -> tuple[list[dict], dict]:
    """PSNR, SSIM (R and measure's metrics, one call for all; the face task's identity) of N restorations
    (N, 3, H, W) of one image against its target, and the input's identity ({} without one)."""
    outs = outs.clamp(0, 1).cpu()
    rows = [dict(zip(("psnr", "ssim"), psnr_ssim(o, item["target"], e.convention, e.crop_border))) for o in outs]
    if reward is not None:
        for row, r in zip(rows, reward(outs, item["target"], item["degraded"], item["task"])):
            row["reward"] = r
    if measure is not None:
        for row, m in zip(rows, measure(outs, item["target"], item["degraded"], item["task"])):
            row |= m
    if identity is None or item["task"] != "face":
        return rows, {}
    emb = identity.embed(torch.cat([outs, item["degraded"][None], item["target"][None]]))  # one forward for all
    *sims, of_input = (emb[:-1] @ emb[-1]).tolist()
    for row, sim in zip(rows, sims):
        row["identity"] = sim
    return rows, {"input_identity": of_input}


def input_baseline(results: dict) -> dict:
    """The same table for the degraded inputs themselves (the 'no restoration' row)."""
    columns = {}
    for col in results["columns"]:
        rows = [r for r in results["per_image"] if r["column"] == col]
        metrics = [k.removeprefix("input_") for k in rows[0] if k.startswith("input_")]
        columns[col] = {m: sum(r[f"input_{m}"] for r in rows) / len(rows) for m in metrics} | {"n": len(rows)}
    return {"convention": results["convention"], "ood": results["ood"], "columns": columns,
            "average": column_average(columns), "average_table2": table2_average(columns)}


def format_table(results: dict) -> str:
    """Markdown table: one evaluate() result, or {row name: result} for several rows (e.g. pre vs post)."""
    rows = {"model": results} if "columns" in results else results
    first = next(iter(rows.values()))
    cols = list(first["columns"])
    for name, r in rows.items():
        if list(r["columns"]) != cols:
            raise ValueError(f"row {name!r} has columns {list(r['columns'])}, expected {cols}")
    title = "OOD set" if first["ood"] else "in-distribution test set"
    averages = ["average"] + (["average_table2"] if all(r.get("average_table2") for r in rows.values()) else [])
    headers = [f"Average ({len(cols)} columns)"] + (["Table 2 average (5 columns, denoise sigma 25)"] if len(averages) > 1 else [])
    lines = [
        f"PSNR (dB) / SSIM on the {title}, {first['convention']} convention",
        "",
        "| Method | " + " | ".join(cols + headers) + " |",
        "|---" * (len(cols) + len(headers) + 1) + "|",
    ]
    for name, r in rows.items():
        cells = [f"{r['columns'][c]['psnr']:.2f} / {r['columns'][c]['ssim']:.4f}" for c in cols]
        cells += [f"{r[a]['psnr']:.2f} / {r[a]['ssim']:.4f}" for a in averages]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results: dict, stem: Path) -> tuple[Path, Path]:
    """Write stem.json (all numbers) and stem.md (the table with the input baseline row)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(results, indent=1))
    md_path.write_text(format_table({"input (degraded)": input_baseline(results), "model": results}))
    return json_path, md_path


def main(argv: list[str] | None = None) -> None:
    p = cli_common.parser("Evaluate a policy: per-task PSNR/SSIM table (markdown + JSON).")
    p.add_argument("--ood", action="store_true", help="Evaluate the out-of-distribution set instead.")
    p.add_argument("--output", type=Path, default=Path("runs/eval/results"), help="Output path stem (.json and .md are written).")
    args = p.parse_args(argv)
    cfg = cli_common.load(args)
    torch.manual_seed(cfg.seed)
    policy = cli_common.policy_for(cfg, args.weights)
    results = evaluate(cfg, policy, ood=args.ood)
    stem = args.output.with_name(args.output.name + ("_ood" if args.ood else ""))
    json_path, md_path = write_results(results, stem)
    print(md_path.read_text())
    print(f"[evaluate] {sum(c['n'] for c in results['columns'].values())} images in {results['seconds']:.1f} s; wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
