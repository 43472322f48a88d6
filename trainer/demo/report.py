"""The demo's report folder: tables of all arms with paired changes (markdown + JSON), the GRPO runs'
reward/loss curves and an image grid (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from trainer.config import TrainConfig  # noqa: E402
from trainer.stats import mean_ci95  # noqa: E402
from trainer.data import build_eval_sets  # noqa: E402
from trainer.evaluate import format_table, input_baseline, photo_of  # noqa: E402
from trainer.inference import restore  # noqa: E402
from trainer.metrics import at_size, psnr_ssim  # noqa: E402
from trainer.metrics_log import read_metrics  # noqa: E402
from trainer.policies import Policy  # noqa: E402
from trainer.watch import WatchPoint, gold_change  # noqa: E402


SPLITS = {"id": "in-distribution", "ood": "OOD"}
# the metrics whose paired changes are reported and judged: key -> (label, unit)
COMPARED = {"psnr": ("PSNR", " dB"), "reward": ("mean R", ""), "psnr_sampled": ("PSNR of the samples", " dB"), "reward_sampled": ("mean R of the samples", ""),
            "identity": ("identity similarity", ""), "identity_sampled": ("identity similarity of the samples", "")}
# what each arm is compared with: every trained arm with the start, the GRPO arms also with the SFT control, and GRPO on
# the hard subset with GRPO on a random subset of the same size (IRPO's data-selection ablation, its Fig. 5)
REFERENCES = {"sft_control": ("pretrained",), "grpo_hard": ("pretrained", "sft_control", "grpo_random"), "grpo_random": ("pretrained", "sft_control")}
TABLE_REFERENCES = tuple(dict.fromkeys(ref for refs in REFERENCES.values() for ref in refs))  # the reports' columns of changes


def photo_means(evaluation: dict, key: str) -> dict[str, float]:
    """photo -> the mean of `key` over that photo's columns: the photo is the sampling unit (its columns share it)."""
    by_photo: dict[str, list[float]] = {}
    for r in evaluation["per_image"]:
        by_photo.setdefault(photo_of(r["id"]), []).append(r[key])
    return {p: sum(v) / len(v) for p, v in by_photo.items()}


def paired_change(arm: dict, reference: dict, key: str = "psnr") -> dict:
    """Mean per-photo change of `key` (PSNR, R, ...) arm - reference over the same test images and its 95% half-width:
    each photo's columns are averaged first, then Student t over the photos (n_photos - 1 degrees of freedom). The
    interval holds the photo-to-photo spread of one run; the seed-to-seed spread is not in it (trainer.experiment)."""
    before = {(r["id"], r["column"]) for r in reference["per_image"]}
    after = {(r["id"], r["column"]) for r in arm["per_image"]}
    if before != after:
        raise ValueError("paired change needs the same test images in both evaluations")
    a, b = photo_means(arm, key), photo_means(reference, key)
    delta, half = mean_ci95([a[p] - b[p] for p in sorted(a)])
    return {"delta": delta, "ci95": half, "n": len(a)}


def verdict(change: dict, arm: str, reference: str, label: str, metric: str = "PSNR", unit: str = " dB", over: str = "photos") -> str:
    """One honest sentence: 'improved' / 'worsened' only when the 95% interval of the paired change excludes 0."""
    mean, half = change["delta"], change["ci95"]
    word = "improved" if mean - half > 0 else "worsened" if mean + half < 0 else "no clear change"
    per = "photo" if over == "photos" else "seed"
    return f"{label}: {arm} vs {reference}: {metric} {word} ({mean:+.3f}{unit} per {per}, 95% interval +-{half:.3f} over {change['n']} {over})"


def multiplicity(verdicts: list[str]) -> str:
    """The sentence every report ends its verdicts with: how many 95% verdicts it makes, uncorrected."""
    n = len(verdicts)
    return (f"{n} verdicts, each at 95% without a multiplicity correction: with no true change anywhere about {0.05 * n:.1f} of them "
            f"would read 'improved' or 'worsened' by chance (Bonferroni over all {n}: 1 - 0.05/{n} intervals).")


def evaluation_protocol(cfg: TrainConfig) -> dict:
    """The evaluation protocol as results.json records it: fixed in the config before any arm's result is seen."""
    return {
        "test_images": "the test photos of data.root, each degraded per column with seeds from data.seed; the OOD set uses other degradation families",
        "crop": cfg.eval.crop, "convention": cfg.eval.convention, "data_seed": cfg.data.seed, "tasks": cfg.data.tasks,
        "noise_sigmas": cfg.data.noise_sigmas, "policy_output": "deterministic (irpo: Beta means; diffusion: DDIM with eta 0 from a fixed noise draw)",
        "stochastic_samples": cfg.eval.samples, "sampled": "*_sampled: mean over eval.samples draws of policy.sample (the sampler GRPO trains), seeded per image",
        "psnr_ssim": "mean of the column means", "reward": "mean R over the split's images, same service and weights as the GRPO runs",
        "unit": "photo: each photo's columns are averaged first",
        "delta": "mean over photos of (arm - reference) on the same images", "ci95": "Student t 95% half-width of that paired mean, n_photos - 1 degrees of freedom",
        "sft_control_vs_itself": "omitted",
    }


def summarise(evals: dict[str, dict[str, dict]]) -> tuple[dict, list[str]]:
    """evals[arm][split] (evaluate() results with rewards) -> (results.json's "arms", verdict sentences).

    Every arm and split holds the column averages (psnr, ssim, reward and, with eval.samples, their *_sampled means;
    the face task's identity and lpips too), the columns and the per-image rows; the trained arms add
    delta_<m>_vs_pretrained / ci95_<m>_vs_pretrained, the GRPO arms also delta_<m>_vs_sft_control /
    ci95_<m>_vs_sft_control (sft_control against itself is omitted) and grpo_hard delta_<m>_vs_grpo_random (REFERENCES),
    for every metric m of COMPARED the rows carry: photo-level paired changes (paired_change).
    """
    arms, verdicts = {}, []
    for arm, splits in evals.items():
        arms[arm] = {}
        for split, ev in splits.items():
            row = dict(ev["average"])
            for reference in REFERENCES.get(arm, ()):
                for key, (label, unit) in COMPARED.items():
                    if all(key in r for r in ev["per_image"]):
                        change = paired_change(ev, evals[reference][split], key)
                        row[f"delta_{key}_vs_{reference}"], row[f"ci95_{key}_vs_{reference}"] = change["delta"], change["ci95"]
                        verdicts.append(verdict(change, arm, reference, SPLITS[split], label, unit))
            arms[arm][split] = row | {"columns": ev["columns"], "per_image": ev["per_image"]}
    return arms, verdicts


def _comparison_table(arms: dict, split: str) -> str:
    def cell(row: dict, reference: str, metric: str = "psnr") -> str:
        key = f"delta_{metric}_vs_{reference}"
        return f"{row[key]:+.3f} +- {row[f'ci95_{metric}_vs_{reference}']:.3f}" if key in row else "-"

    sampled = "psnr_sampled" in next(iter(arms.values()))[split]
    outputs = [("", "deterministic output")] + ([("_sampled", "mean over the stochastic samples (eval.samples)")] if sampled else [])
    lines = []
    for suffix, what in outputs:
        lines += [f"{what}: average over the columns and paired per-photo changes of PSNR (dB) and R (95% intervals over photos), {SPLITS[split]}", "",
                  "| arm | PSNR | SSIM | mean R | " + " | ".join(f"{m} vs {ref}" for m in ("PSNR", "R") for ref in TABLE_REFERENCES) + " |",
                  "|---" * (4 + 2 * len(TABLE_REFERENCES)) + "|"]
        for arm, splits in arms.items():
            row = splits[split]
            changes = " | ".join(cell(row, ref, m + suffix) for m in ("psnr", "reward") for ref in TABLE_REFERENCES)
            lines.append(f"| {arm} | {row['psnr' + suffix]:.2f} | {row['ssim' + suffix]:.4f} | {row['reward' + suffix]:.4f} | {changes} |")
        lines.append("")
    if all("identity" in splits[split] for splits in arms.values()):  # the face task
        lines += [f"Face metrics, {SPLITS[split]}: identity similarity (cosine of ArcFace embeddings; per-photo changes, 95% intervals over photos) "
                  "and LPIPS distance (the reward service's)", "",
                  "| arm | identity | LPIPS | identity vs pretrained | identity vs sft_control |", "|---|---|---|---|---|"]
        for arm, splits in arms.items():
            row = splits[split]
            lines.append(f"| {arm} | {row['identity']:.4f} | {row.get('lpips', float('nan')):.4f} | {cell(row, 'pretrained', 'identity')} | {cell(row, 'sft_control', 'identity')} |")
        lines.append("")
    return "\n".join(lines)


def _real_world_table(real_world: dict[str, dict]) -> str:
    """real_world[arm][set] (trainer.evaluate_real_world) -> one markdown table per set, the input first."""
    parts = []
    for name in next(iter(real_world.values())):
        first = real_world[next(iter(real_world))][name]
        keys = list(first["metrics"])
        lines = [f"Real-world set {name} ({first['n']} faces, no ground truth): the reward service's no-reference metrics", "",
                 "| arm | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|",
                 "| input | " + " | ".join(f"{first['input'].get(k, float('nan')):.4f}" for k in keys) + " |"]
        lines += [f"| {arm} | " + " | ".join(f"{sets[name]['metrics'].get(k, float('nan')):.4f}" for k in keys) + " |" for arm, sets in real_world.items()]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def watch_summary(path: Path) -> dict | None:
    """A GRPO arm's reward-hacking watch (its watch.json, trainer/watch.py): gold R, PSNR and SSIM at the first and
    last watch points, their paired changes with 95% intervals over the gold pairs, and the run's warnings; None
    when the run had no watch."""
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    first, last = WatchPoint(**state["points"][0]), WatchPoint(**state["points"][-1])
    change = {}
    for key in ("reward", "psnr", "ssim"):
        mean, half = gold_change(first, last, key)
        change[key] = {"first": first.summary()[f"gold/{key}"], "last": last.summary()[f"gold/{key}"], "change": mean, "ci95": half}
    return {"steps": [first.step, last.step], "points": len(state["points"]), "gold_pairs": len(first.reward),
            "change": change, "warnings": state["warnings"]}


def _watch_table(watch: dict[str, dict]) -> str:
    """watch[arm] (watch_summary) -> a markdown table: gold metrics first -> last point, and the warnings."""
    lines = ["Reward-hacking watch: held-out training pairs (not post-trained on, not the test photos) restored during "
             "each GRPO run, first -> last watch point, paired change +- 95% interval over the gold pairs", "",
             "| arm | steps | gold pairs | R | PSNR (dB) | SSIM | warnings |", "|---|---|---|---|---|---|---|"]
    for arm, w in watch.items():
        cells = [f"{c['first']:.4f} -> {c['last']:.4f} ({c['change']:+.4f} +- {c['ci95']:.4f})" for c in w["change"].values()]
        lines.append(f"| {arm} | {w['steps'][0]}-{w['steps'][1]} ({w['points']} points) | {w['gold_pairs']} | " + " | ".join(cells)
                     + f" | {len(w['warnings']) or 'none'} |")
    lines += [f"- {arm}: {text}" for arm, w in watch.items() for text in w["warnings"]]
    return "\n".join(lines) + "\n"


def write_results(evals: dict[str, dict[str, dict]], extra: dict, out: Path) -> tuple[str, list[str]]:
    """results.md (per-column tables of all arms with the degraded input, the comparison tables, the verdicts) and
    results.json ({"arms": {arm: {split: ...}}, "input": {split: {"psnr", "ssim"}}, **extra})."""
    arms, verdicts = summarise(evals)
    first = next(iter(evals.values()))
    parts = []
    for split in SPLITS:
        parts.append(format_table({"input (degraded)": input_baseline(first[split]), **{arm: e[split] for arm, e in evals.items()}}))
        parts.append(_comparison_table(arms, split))
    if extra.get("real_world"):
        parts.append(_real_world_table(extra["real_world"]))
    if extra.get("watch"):
        parts.append(_watch_table(extra["watch"]))
    text = "\n".join(parts)
    (out / "results.md").write_text(text + "\n" + "\n".join(f"- {v}" for v in verdicts) + f"\n\n{multiplicity(verdicts)}\n")
    inputs = {split: input_baseline(first[split])["average"] for split in SPLITS}
    (out / "results.json").write_text(json.dumps({"arms": arms, "input": inputs, **extra}, indent=1))
    return text, verdicts


# the supervised term each family logs (irpo: L1 of the best candidate; diffusion: the diffusion loss)
SUPERVISED_LOSSES = {"loss/sup_l1": "L1(best candidate, GT)", "loss/sft": "diffusion loss L_SFT"}


def _running_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_curves(metrics_files: dict[str, Path], path: Path, window: int = 10) -> Path:
    """Reward and losses per step of each GRPO run (label -> its metrics.jsonl), one colour per run."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for label, metrics_file in metrics_files.items():
        rows = read_metrics(metrics_file)
        if not rows:
            raise ValueError(f"{metrics_file} holds no steps to plot")
        steps = [r["step"] for r in rows]
        supervised = next(k for k in SUPERVISED_LOSSES if k in rows[0])
        keys = (("reward/mean", "reward R (batch mean)"), ("loss/total", "total loss"), (supervised, SUPERVISED_LOSSES[supervised]), ("kl", "KL to reference"))
        # each step sees different images, so a step's reward mostly says how hard its images are:
        # the running mean shows the trend
        for ax, (key, title) in zip(axes, keys):
            values = [r[key] for r in rows]
            line, = ax.plot(steps, _running_mean(values, window), label=f"{label} (running mean, {window} steps)")
            ax.plot(steps, values, alpha=0.25, color=line.get_color())
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
def image_grid(cfg: TrainConfig, policies: dict[str, Policy], path: Path) -> Path:
    """One test image per column of the in-distribution set: degraded / each policy / ground truth,
    each restoration titled with its PSNR."""
    sets = build_eval_sets(cfg.data, ood=False, crop=cfg.eval.crop)
    rows = []
    for r, (column, dataset) in enumerate(sets.items()):
        item = dataset[r % len(dataset)]  # a different photo per row where the set has several
        x = item["degraded"][None]
        outs = {name: restore(p, x.to(next(p.parameters()).device), cfg.eval.tile, cfg.eval.tile_overlap)[0].cpu() for name, p in policies.items()}
        rows.append((column, item, outs))
    width = len(policies) + 2
    fig, axes = plt.subplots(len(rows), width, figsize=(2.5 * width, 2.6 * len(rows)), squeeze=False)
    for r, (column, item, outs) in enumerate(rows):
        panels = [("degraded", at_size(item["degraded"], item["target"].shape[-2:])), *outs.items(), ("ground truth", item["target"])]
        for c, (name, img) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(_show(img))
            ax.set_xticks([])
            ax.set_yticks([])
            title = name if c == width - 1 else f"{name}\n{psnr_ssim(img, item['target'], cfg.eval.convention, cfg.eval.crop_border)[0]:.2f} dB"
            ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(column, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _panel(ax, img: torch.Tensor, title: str) -> None:
    ax.imshow(_show(img))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


@torch.no_grad()
def candidates_grid(cfg: TrainConfig, policy: Policy, reward, path: Path, rows: int = 3) -> list[dict]:
    """What GRPO compares: for one test image of each of the first `rows` in-distribution columns, degraded /
    the G stochastic candidates of one sample() call (seeded by cfg.seed), each titled with its R and PSNR /
    the deterministic output / ground truth. Returns each row's column, candidate rewards and their spread."""
    sets = build_eval_sets(cfg.data, ood=False, crop=cfg.eval.crop)
    g = cfg.grpo.group_size
    device = next(policy.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    width = g + 3
    picked = list(sets.items())[:rows]
    fig, axes = plt.subplots(len(picked), width, figsize=(2.3 * width, 2.5 * len(picked)), squeeze=False)
    spreads = []
    for r, (column, dataset) in enumerate(picked):
        item = dataset[r % len(dataset)]
        x, target = item["degraded"][None].to(device), item["target"]
        candidates = policy.sample(x, g, generator=gen).images.clamp(0, 1).cpu()
        rewards = reward(candidates, target, item["degraded"], item["task"])
        mean_r = sum(rewards) / g
        std_r = torch.tensor(rewards).std().item()  # as the runs' reward/group_std
        spreads.append({"column": column, "id": item["id"], "rewards": rewards, "mean": mean_r, "std": std_r, "range": max(rewards) - min(rewards)})
        panels = [("degraded", at_size(item["degraded"], target.shape[-2:]))]
        panels += [(f"candidate {j + 1}\nR {rw:.3f}", c) for j, (c, rw) in enumerate(zip(candidates, rewards))]
        panels += [("deterministic", policy.deterministic(x)[0].cpu()), ("ground truth", target)]
        for c, (name, img) in enumerate(panels):
            psnr = "" if c == width - 1 else f", {psnr_ssim(img.clamp(0, 1), target, cfg.eval.convention, cfg.eval.crop_border)[0]:.2f} dB"
            _panel(axes[r][c], img, name + psnr)
            if c == 0:
                axes[r][c].set_ylabel(f"{column}\nstd R {std_r:.3f} ({std_r / max(abs(mean_r), 1e-12):.1%} of mean)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return spreads
