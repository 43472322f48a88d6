"""The GPU check behind scripts/gpu_check.sh: one run, under 10 minutes on one large GPU, of what a
CPU machine cannot show. Stages, each printed as it ends:

1. device: what torch sees.
2. batched rollout: one policy.sample of B images x G candidates against G calls of one candidate
   each, on the device; the speed-up (target there: at least 1.5x).
3. train: the paper preset's AdaIR (RANDOM weights: no checkpoint is fetched) for a few steps on
   stand-in images at 128 px, G = 4, the reward service on the device in bfloat16 (random weights,
   its real architecture), learner and rollouts on the device; per-stage step times from
   metrics.jsonl and the peak GPU memory of all processes (nvidia-smi, polled); with 4+ GPUs the weights go to the
   actors by NCCL broadcast from learner rank 0 (rollout.weight_sync.transport: collective), the dry run by gloo.
4. resume: the run again from its middle checkpoint to the end; the largest weight difference to
   the uninterrupted run (0 on the CPU; CUDA kernels need not be bitwise deterministic).
5. judge: a rollout's judge request through the judge service and vLLM, when vLLM is importable and
   IRPO_JUDGE_MODEL names a local model folder (the dry run: the tiny CPU model, when built).

--dry-run does the same on the CPU with the micro preset, 32 px crops, 2 steps and G = 2: it checks
the wiring (the test suite runs it) and prints no GPU number: it says that nothing ran on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ray
import torch
from safetensors.torch import load_file

from devtools.local_servers import LocalVLLM, ThreadedServer, vllm_unavailable_reason
from devtools.timing import synced_seconds
from irpo_common.process import ManagedProcess, free_port
from judge_server.app import create_app as create_judge_app
from judge_server.client import JudgeClient
from judge_server.settings import JudgeSettings
from trainer.config import TrainConfig, load_config
from trainer.demo.corpus import write_standin_corpus
from trainer.local_service import LocalRewardService
from trainer.metrics_log import read_metrics
from trainer.model.presets import MICRO
from trainer.policies import build_policy
from trainer.run import init_ray, train

REPO = Path(__file__).resolve().parent.parent
STAGE_KEYS = ("time/sample", "time/reward", "time/score", "time/update", "time/weight_export", "time/weight_sync", "time/rollout_wait", "time/step")


def say(stage: str, text: str) -> None:
    print(f"[gpu-check] {stage}: {text}", flush=True)


class GpuMemoryPeak:
    """Peak memory.used over all GPUs (MiB), polled with nvidia-smi: actors and services are other processes."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True)
            if out.returncode == 0:
                self.peak = max([self.peak, *(int(x) for x in out.stdout.split())])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_config(work: Path, dry: bool, steps: int, reward_url: str) -> TrainConfig:
    cfg = load_config(REPO / "configs" / "paper-5task.yaml", [])
    raw = json.loads(cfg.model_dump_json())
    raw.update(device="cpu" if dry else "cuda", name="gpu-check")
    raw["model"] = {**raw["model"], "checkpoint": None, **(MICRO if dry else {})}
    raw["data"] = {"source": "demo", "root": str(work / "photos"), "tasks": ["denoise"], "crop_size": 32 if dry else 128, "noise_sigmas": [25.0]}
    raw["grpo"] = {**raw["grpo"], "group_size": 2 if dry else 4, "train_on": "all"}
    raw.pop("mining")  # the defaults: no mined subset (train_on all)
    raw["optim"] = {**raw["optim"], "max_steps": steps}
    gpus = torch.cuda.device_count()
    # one GPU: learner 0.5 + two rollout actors 0.25 each (the reward service shares it outside Ray)
    raw["rollout"] = {**raw["rollout"], "num_workers": 2, "images_per_worker": 1, "gpus_per_worker": 0 if dry else 0.25,
                      "cpus_per_worker": 1 if dry else 2}
    raw["learner"] = {**raw["learner"], "cpus_per_rank": 1, "gpus_per_rank": 0 if dry else (0.5 if gpus == 1 else 1)}
    if gpus >= 2:  # the data-parallel learner group (issue 22 item 3): 2 NCCL ranks, a whole GPU each
        raw["learner"].update(num_ranks=2)
    # the weight broadcast from learner rank 0 (issue 22 item 5): NCCL needs a whole GPU per member, so 2 learner ranks
    # + 2 actors need 4; the dry run broadcasts over gloo
    collective = dry or gpus >= 4
    if collective:
        raw["rollout"].update(gpus_per_worker=0 if dry else 1, weight_sync={"transport": "collective"})
    raw["reward"] = {**raw["reward"], "url": reward_url, "token_env": None, "psnr_range_db": None}
    raw["judge"] = {**raw["judge"], "url": None, "token_env": None}
    raw["watch"] = {**raw["watch"], "images": 2}  # the stand-in corpus is small: 2 held-out pairs keep the watch in the check
    raw["checkpoint"] = {"dir": str(work / "run" / "checkpoints"), "every_steps": steps // 2, "keep": 5}
    raw["logging"] = {"dir": str(work / "run"), "progress": False, "tensorboard": False}
    raw["ray"] = {**raw["ray"], "address": None, "num_cpus": 4 if dry else None, "temp_dir": tempfile.mkdtemp(prefix="ray-gpuchk-", dir="/tmp")}
    return TrainConfig.model_validate(raw)


def batched_speedup(cfg: TrainConfig, device: torch.device, images: int = 2, repeats: int = 3) -> tuple[float, float, float]:
    """(seconds batched, seconds for G single-candidate calls, speed-up) of the policy's sampling."""
    policy = build_policy(cfg.policy_section, load_weights=False).to(device).eval()
    side, g = cfg.data.crop_size, cfg.grpo.group_size
    x = torch.rand(images, 3, side, side, device=device)

    def timed(fn) -> float:
        fn()  # warm-up (kernels, allocator)
        best = float("inf")
        for _ in range(repeats):
            best = min(best, synced_seconds(fn, device))
        return best

    gen = torch.Generator().manual_seed(0)
    batched = timed(lambda: policy.sample(x, g, generator=gen))
    sequential = timed(lambda: [policy.sample(x, 1, generator=gen) for _ in range(g)])
    return batched, sequential, sequential / batched


def transport_line(cfg: TrainConfig, rows: list[dict]) -> str:
    """How the run's versions reached the rollout actors (metrics.jsonl's weight_sync/broadcast: 1 broadcast, 0 object store)."""
    if cfg.rollout.weight_sync.transport != "collective":
        return "weight sync: object store (a collective broadcast needs 4+ GPUs here: 2 learner ranks and 2 actors, a whole GPU each)"
    flags = [r["weight_sync/broadcast"] for r in rows if "weight_sync/broadcast" in r]
    return f"weight sync: collective broadcast on {sum(flags):g} of {len(flags)} logged versions, the rest through the object store"


def step_table(rows: list[dict]) -> str:
    """Per-step seconds of each stage, from metrics.jsonl's rows."""
    lines = ["step " + " ".join(f"{k.removeprefix('time/'):>12}" for k in STAGE_KEYS)]
    for r in rows:
        lines.append(f"{r['step']:>4} " + " ".join(f"{r[k]:12.3f}" if r.get(k) is not None else f"{'-':>12}" for k in STAGE_KEYS))
    return "\n".join(lines)


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a)), load_file(str(b))
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


def judge_stage(dry: bool, work: Path, side: int, group_size: int) -> None:
    """A rollout's judge request (2 images x G candidates, three images each) through the judge service
    in front of vLLM: on a GPU the model in IRPO_JUDGE_MODEL, in the dry run the tiny RANDOM CPU model
    of scripts/setup_vllm_cpu.sh when it is built."""
    if dry:
        reason = vllm_unavailable_reason()
        if reason:
            say("judge", f"skipped: {reason}")
            return
        backend, served, what = LocalVLLM(log_path=work / "vllm.log"), "tiny-qwen2.5-vl", "the tiny RANDOM model on the CPU"
    else:
        model = os.environ.get("IRPO_JUDGE_MODEL")
        if importlib.util.find_spec("vllm") is None:
            say("judge", "skipped: vLLM is not installed in this environment")
            return
        if not model or not Path(model).is_dir():
            say("judge", "skipped: set IRPO_JUDGE_MODEL to a local model folder (no model hub is reached)")
            return
        port = free_port()
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "judge",
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16", "--max-model-len", "8192",
               "--limit-mm-per-prompt", json.dumps({"image": 3, "video": 0}), "--gpu-memory-utilization", "0.5"]
        backend = ManagedProcess("vLLM", cmd, f"http://127.0.0.1:{port}/v1", ready_path="/models", log_path=work / "vllm.log")
        served, what = "judge", model
    n = 2 * group_size
    images = torch.rand(n, 3, side, side)
    with backend.start(600), ThreadedServer(create_judge_app(JudgeSettings(backend_url=backend.url, model=served))) as judge:
        client = JudgeClient(judge.url, timeout_s=600)
        seconds = []
        for _ in range(2):  # the first call warms up (prefix cache, kernels)
            t0 = time.perf_counter()
            results = client.judge_batch(images, images, images, tasks=["denoise"] * n, mode="fast")
            seconds.append(time.perf_counter() - t0)
    say("judge", f"{n} candidates through vLLM ({what}): {seconds[-1]:.2f} s per request warm ({seconds[0]:.2f} s cold); {sum(r.reward is not None for r in results)} of {n} scored")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the stages on the CPU at toy size (no GPU number is printed)")
    p.add_argument("--steps", type=int, default=4, help="training steps (even: the resume starts at the middle checkpoint)")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("error: no CUDA device is visible; use --dry-run on a CPU machine", file=sys.stderr)
        return 2
    if args.steps < 2 or args.steps % 2:
        print("error: --steps must be even and at least 2", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    if dry:
        say("device", "DRY RUN on the CPU: nothing below ran on a GPU; every GPU number is n/a")
    else:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        say("device", f"{len(names)} GPU(s): {', '.join(names)}")
    device = torch.device("cpu" if dry else "cuda")
    write_standin_corpus(work / "photos", n_train=4, n_test=1, size=(160, 160) if not dry else (48, 48))

    reward_args = ["--random-weights"] + (["--config", str(REPO / "configs" / "reward-cpu.yaml"), "--device", "cpu"] if dry else ["--device", "cuda"])
    settings = {"REWARD_SERVER_PRECISION": "float32" if dry else "bfloat16"}
    with LocalRewardService(reward_args, log_path=work / "reward.log", threads=1 if dry else None, settings=settings).start(600) as reward:
        cfg = run_config(work, dry, args.steps, reward.url)
        batched, sequential, speedup = batched_speedup(cfg, device)
        say("batched rollout", f"{cfg.grpo.group_size} candidates x 2 images: batched {batched:.3f} s, {cfg.grpo.group_size} single calls {sequential:.3f} s: speed-up {speedup:.2f}x (target on a GPU >= 1.5x){' [CPU, not the target]' if dry else ''}")
        say("reward", f"service on {'cpu, float32' if dry else 'cuda, bfloat16'} with RANDOM weights ({reward.url})")
        init_ray(cfg)  # one Ray for both runs (train() joins it and leaves it up)
        with GpuMemoryPeak() if not dry else contextlib.nullcontext() as mem:
            t0 = time.perf_counter()
            train(cfg)
            rows = read_metrics(cfg.logging.dir / "metrics.jsonl")
            say("train", f"{args.steps} steps of the {'micro' if dry else 'paper'} preset (RANDOM weights) in {time.perf_counter() - t0:.1f} s; {transport_line(cfg, rows)}; per-step seconds:\n{step_table(rows)}")
            first = cfg.logging.dir
            resumed_dir = work / "resumed"
            shutil.copytree(first / "checkpoints" / f"step-{args.steps // 2:08d}", resumed_dir / "checkpoints" / f"step-{args.steps // 2:08d}")
            resumed = cfg.model_copy(update={"logging": cfg.logging.model_copy(update={"dir": resumed_dir}),
                                             "checkpoint": cfg.checkpoint.model_copy(update={"dir": resumed_dir / "checkpoints"})})
            t0 = time.perf_counter()
            train(resumed, resume="auto")
            final = f"step-{args.steps:08d}/policy.safetensors"
            diff = max_weight_diff(first / "checkpoints" / final, resumed_dir / "checkpoints" / final)
            say("resume", f"from step {args.steps // 2} to {args.steps} in {time.perf_counter() - t0:.1f} s; largest weight difference to the uninterrupted run {diff:.3g}")
        ray.shutdown()
        say("memory", "peak GPU memory n/a (dry run)" if dry else f"peak GPU memory (all processes) {mem.peak} MiB")
    judge_stage(dry, work, cfg.data.crop_size, cfg.grpo.group_size)
    say("done", f"{time.perf_counter() - t_start:.0f} s in all{' (DRY RUN: no GPU was used)' if dry else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
