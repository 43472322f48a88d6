"""Pipeline efficiency of the GRPO trainer: per-stage times, images/s, step time vs the sum of the
stage times, and the learner's idle fraction, with overlap on (rollout.max_staleness >= 1) and off (0).

    .venv/bin/python -m benchmarks.bench_pipeline [--config configs/cpu-demo.yaml] [--steps 30]
        [--staleness 0 1] [--reward-latency-ms 0] [--set a.b=v ...] [--output runs/bench/pipeline.json]

One local reward service and one local Ray serve every variant (their start-up is not measured).
The policy starts from pretrain.output when it exists, else from random weights (timings do not
depend on the weights); it trains on the whole training set (no mining needed). The first
--warmup steps of each variant are left out of the statistics.

--reward-latency-ms puts devtools/latency_proxy.py in front of the reward service: every request
waits that long, as for a service on its own GPUs across the network, whose compute does not take
the trainer's cores (on one small machine the service otherwise competes with the learner).
--judge-latency-ms adds a judge service (fast mode) answered by devtools' scripted backend behind
such a proxy: the judge stage then costs its network latency, not a model on the trainer's cores.

--sweep KEY=V1,V2 (repeatable) varies one setting at a time from the base config, for each
staleness: e.g. the step time against grpo.group_size=2,4,8, rollout.images_per_worker=1,2 or
rollout.num_workers=1,2. The paper's model on this CPU (random weights):
    --config configs/paper-5task.yaml --set data.source=demo --set data.root=data/demo \
    --set rollout.gpus_per_worker=0 --set learner.gpus_per_rank=0 --set learner.precision=fp32 --set rollout.cpus_per_worker=1 ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import ray
from devtools.latency_proxy import latency_proxy

from devtools.local_servers import ThreadedServer
from devtools.scripted_backend import FAST, ScriptedBackend
from judge_server.app import create_app as judge_app
from judge_server.settings import JudgeSettings
from trainer.config import TrainConfig, load_config
from trainer.local_service import LocalRewardService
from trainer.metrics_log import read_metrics
from trainer.run import Trainer, init_ray, train

STAGES = ("time/sample", "time/reward", "time/judge", "time/update", "time/weight_sync")


def summarise(rows: list[dict], images_per_step: int) -> dict:
    med = {k: statistics.median(r[k] for r in rows) for k in (*STAGES, "time/score", "time/step", "time/rollout_wait")}
    stage_sum = med["time/sample"] + med["time/score"] + med["time/update"] + med["time/weight_sync"]
    return {
        "steps": len(rows),
        **{k.removeprefix("time/") + "_s": v for k, v in med.items()},
        "sum_of_stages_s": stage_sum,
        "step_over_sum": med["time/step"] / stage_sum,
        "images_per_s": images_per_step / med["time/step"],
        "learner_idle_fraction": statistics.mean(r["learner_idle_fraction"] for r in rows),
        "slowest_stage": max(("rollout+reward", med["time/sample"] + med["time/score"]), ("update", med["time/update"]), key=lambda kv: kv[1])[0],
    }


def variants(config: str, overrides: list[str], sweeps: list[str]) -> dict[str, TrainConfig]:
    """The base config, and one config per KEY=VALUE of each --sweep KEY=V1,V2,... (one factor at a time)."""
    out = {"base": load_config(config, overrides)}
    for sweep in sweeps:
        key, _, values = sweep.partition("=")
        out.update({f"{key}={v}": load_config(config, [*overrides, f"{key}={v}"]) for v in values.split(",")})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/cpu-demo.yaml")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--staleness", type=int, nargs="+", default=[0, 1])
    p.add_argument("--reward-latency-ms", type=float, default=0.0, help="Added latency per reward request (emulates a remote service).")
    p.add_argument("--judge-latency-ms", type=float, default=0.0, help="Add a scripted fast-mode judge behind this latency (0: no judge).")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--sweep", action="append", default=[], help="KEY=V1,V2,...: one variant per value (repeatable).")
    p.add_argument("--output", type=Path, default=Path("runs/bench/pipeline.json"))
    args = p.parse_args(argv)
    configs = variants(args.config, args.overrides, args.sweep)
    base = configs["base"]
    start = base.pretrain.output if base.pretrain.output.is_file() else None
    with LocalRewardService.maybe(base.reward) as local_url, contextlib.ExitStack() as stack:
        url = local_url or base.reward.url
        if args.reward_latency_ms > 0:
            url = stack.enter_context(ThreadedServer(latency_proxy(url, args.reward_latency_ms / 1000))).url
        reward = base.reward.model_copy(update={"url": url, "start_local": False})
        judge = base.judge
        if args.judge_latency_ms > 0:
            backend = stack.enter_context(ScriptedBackend(logprobs=FAST))
            service = stack.enter_context(ThreadedServer(judge_app(JudgeSettings(backend_url=backend.url, model="judge-model"))))
            proxy = stack.enter_context(ThreadedServer(latency_proxy(service.url, args.judge_latency_ms / 1000)))
            judge = judge.model_copy(update={"url": proxy.url, "mode": "fast", "token_env": None})
        init_ray(base)
        # The run's start-up diagnostic (25 forward passes per image) is not part of a step; at the paper's
        # model size on a CPU it costs more than the steps measured here.
        Trainer._log_action_sensitivity = lambda self: None
        results = {}
        for name, variant in configs.items():
            for s in args.staleness:
                label = f"{name}, staleness={s}"
                run_dir = args.output.with_suffix("") / label.replace(", ", "_").replace("=", "-")  # one folder per bench run
                shutil.rmtree(run_dir, ignore_errors=True)
                cfg = variant.model_copy(update={
                    "model": variant.model.model_copy(update={"checkpoint": start}),
                    "grpo": variant.grpo.model_copy(update={"train_on": "all"}),
                    "optim": variant.optim.model_copy(update={"max_steps": args.steps, "epochs": 1000}),
                    "rollout": variant.rollout.model_copy(update={"max_staleness": s}),
                    "reward": reward,
                    "judge": judge,
                    "checkpoint": variant.checkpoint.model_copy(update={"dir": run_dir / "checkpoints", "every_steps": 10**6}),
                    "logging": variant.logging.model_copy(update={"dir": run_dir, "progress": False}),
                })
                print(f"[bench] {label}: {args.steps} steps", flush=True)
                train(cfg)
                rows = read_metrics(run_dir / "metrics.jsonl")[args.warmup:]
                results[label] = summarise(rows, cfg.rollout.num_workers * cfg.rollout.images_per_worker)
        ray.shutdown()
    info = {"config": args.config, "overrides": args.overrides, "sweeps": args.sweep, "steps": args.steps, "warmup": args.warmup,
            "reward_latency_ms": args.reward_latency_ms, "judge_latency_ms": args.judge_latency_ms,
            "weights": str(start) if start else "random", "load_average": os.getloadavg(), "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(info, indent=1))
    keys = ["sample_s", "reward_s", "judge_s", "update_s", "weight_sync_s", "sum_of_stages_s", "step_s", "step_over_sum", "images_per_s", "learner_idle_fraction", "slowest_stage"]
    print("| variant | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    print(f"[bench] wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
