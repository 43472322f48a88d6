"""The demo's report folder: tables (markdown + JSON), reward/loss curves and an image grid (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from trainer.config import TrainConfig  # noqa: E402
from trainer.data import build_eval_sets  # noqa: E402
from trainer.evaluate import format_table, input_baseline  # noqa: E402
from trainer.inference import restore  # noqa: E402
from trainer.metrics import psnr_ssim  # noqa: E402
from trainer.metrics_log import read_metrics  # noqa: E402
from trainer.model import RestorationPolicy  # noqa: E402


def verdict(pre: dict, post: dict, label: str) -> str:
    """One honest sentence on the average PSNR/SSIM change.

    'improved' / 'worsened' only when the 95% interval of the per-image paired PSNR change excludes 0;
    a smaller change is reported as within the image-to-image spread (seed-to-seed spread is not in it).
    """
    dp = post["average"]["psnr"] - pre["average"]["psnr"]
    ds = post["average"]["ssim"] - pre["average"]["ssim"]
    before = {(r["id"], r["column"]): r["psnr"] for r in pre["per_image"]}
    diffs = torch.tensor([r["psnr"] - before[(r["id"], r["column"])] for r in post["per_image"]], dtype=torch.float64)
    half = 1.96 * diffs.std().item() / len(diffs) ** 0.5 if len(diffs) > 1 else float("inf")
    mean = diffs.mean().item()
    if mean - half > 0:
        word = "improved"
    elif mean + half < 0:
        word = "worsened"
    else:
        word = "did not clearly change"
    return (f"{label}: GRPO post-training {word} the average PSNR ({dp:+.3f} dB; per-image change {mean:+.3f} dB, "
            f"95% interval +-{half:.3f} over {len(diffs)} images; SSIM {ds:+.4f}).")


def write_tables(results: dict[str, dict[str, dict]], out: Path) -> tuple[str, list[str]]:
    """results[split][row] with split 'in_distribution'/'ood', rows 'pre-trained'/'post-trained'."""
    parts, verdicts = [], []
    for split, rows in results.items():
        table = {"input (degraded)": input_baseline(rows["pre-trained"]), **rows}
        parts.append(format_table(table))
        verdicts.append(verdict(rows["pre-trained"], rows["post-trained"], "in-distribution" if split == "in_distribution" else "OOD"))
    text = "\n".join(parts)
    (out / "results.md").write_text(text + "\n" + "\n".join(f"- {v}" for v in verdicts) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return text, verdicts


def _running_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_curves(metrics_file: Path, path: Path, window: int = 10) -> Path:
    rows = read_metrics(metrics_file)
    if not rows:
        raise ValueError(f"{metrics_file} holds no steps to plot")
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    # each step sees different images, so a step's reward mostly says how hard its images are:
    # the running mean shows the trend
    for ax, (key, title) in zip(axes, (("reward/mean", "reward R (batch mean)"), ("loss/total", "total loss"), ("loss/sup_l1", "L1(best candidate, GT)"), ("kl", "KL to reference"))):
        values = [r[key] for r in rows]
        ax.plot(steps, values, alpha=0.35, label="per step")
        ax.plot(steps, _running_mean(values, window), label=f"running mean ({window} steps)")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _show(img: torch.Tensor):
    return img.clamp(0, 1).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def image_grid(cfg: TrainConfig, pre: RestorationPolicy, post: RestorationPolicy, path: Path) -> Path:
    """One test image per column of the in-distribution set: degraded / pre-trained / post-trained / ground truth,
    each restoration titled with its PSNR."""
    sets = build_eval_sets(cfg.data, ood=False, crop=cfg.eval.crop)
    rows = []
    for r, (column, dataset) in enumerate(sets.items()):
        item = dataset[r % len(dataset)]  # a different photo per row where the set has several
        x = item["degraded"][None]
        outs = [restore(p, x.to(next(p.parameters()).device), cfg.eval.tile, cfg.eval.tile_overlap)[0].cpu() for p in (pre, post)]
        rows.append((column, item, outs))
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for r, (column, item, (out_pre, out_post)) in enumerate(rows):
        panels = [("degraded", item["degraded"]), ("pre-trained", out_pre), ("post-trained", out_post), ("ground truth", item["target"])]
        for c, (name, img) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(_show(img))
            ax.set_xticks([])
            ax.set_yticks([])
            title = name if c == 3 else f"{name}\n{psnr_ssim(img, item['target'], cfg.eval.convention, cfg.eval.crop_border)[0]:.2f} dB"
            ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(column, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
