"""GRPO post-training on Ray: `python trainer/run.py --config configs/cpu-demo.yaml` or under `ray job submit`.

One driver loop: rollout actors sample and score step k+S while the learner updates on step k
(S = rollout.max_staleness; 0 = fully on-policy). Rollout j always samples with policy version
max(0, j - S), so a retried or resumed step is computed exactly as it would have been. A rollout
goes from its actor to the learner by object reference; the driver fetches only its small stats.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass

import ray
import torch
from ray._private import ray_constants
from ray.exceptions import ObjectLostError
from tqdm import tqdm
from upath import UPath

from irpo_common.process import ProcessError
from reward_server.client import RewardRequestError
from trainer.actors.learner_group import LearnerGroup, LearnerLost
from trainer.actors.messages import ImageBatch, RolloutStats
from trainer.actors.placement import PlacementError
from trainer.actors.rollout_group import RolloutGroup, RolloutGroupError
from trainer.actors.scoring import JudgeOutage, Scorer, ServiceUnavailable, check_services, tasks_without_term
from trainer.actors.weight_sync import full_state
from trainer.checkpointing import Checkpoint, CheckpointError, CheckpointWriter, list_checkpoints, resolve_resume, save_checkpoint
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.data import DataLayoutError
from trainer.grpo.advantages import zero_spread_fraction
from trainer.local_service import LocalRewardService
from trainer.metrics_log import MetricsLog, WandbRun, new_wandb_id
from trainer.data.post_training import DataCursor, TrainDataError, gold_set, load_training_data, step_items
from trainer.data.prefetch import Prefetcher
from trainer.mining import calibrate_psnr_range
from trainer.preflight import PreflightError, check_policy_and_resume, check_storage
from trainer.watch import Watch, measure

log = logging.getLogger("trainer.run")
# Training crops the start-of-run action sensitivity is measured on (24 forward passes each).
SENSITIVITY_IMAGES = 4


class RunError(RuntimeError):
    """The run cannot start or cannot go on; the message says why and what to do."""


@dataclass
class RunResult:
    steps: int  # learner steps completed in total
    start_step: int
    checkpoint: UPath | None
    run_dir: UPath
    random_reward_terms: list[str]  # reward terms the service computed with RANDOM model weights
    watch_warnings: list[str]  # the reward-hacking watch's warnings (trainer/watch.py), also in watch.json


def total_steps(cfg: TrainConfig, num_images: int) -> int:
    per_step = cfg.rollout.num_workers * cfg.rollout.images_per_worker
    steps = cfg.optim.epochs * math.ceil(num_images / per_step)
    return min(steps, cfg.optim.max_steps) if cfg.optim.max_steps else steps


def init_ray(cfg: TrainConfig) -> bool:
    """Join the configured/ambient cluster or start a local one; True when this call started Ray."""
    if ray.is_initialized():
        return False
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return True
    # A local Ray otherwise binds every interface; a single-machine run stays on loopback. Ray reads
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when it is imported, so setting the variable here would
    # be too late: the flag it sets is switched off instead (tests/trainer/test_run_loopback.py).
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(
        num_cpus=cfg.ray.num_cpus,
        object_store_memory=cfg.ray.object_store_mb * 1024 * 1024,
        include_dashboard=cfg.ray.include_dashboard,
        _temp_dir=str(cfg.ray.temp_dir.resolve()) if cfg.ray.temp_dir else None,
    )
    return True


class Trainer:
    """The driver: owns the actors, the data order, the schedule, checkpoints and logs."""

    def __init__(self, cfg: TrainConfig, resume: str = "never"):
        self.cfg = cfg
        check_storage(cfg)
        self.data = load_training_data(cfg)  # stops here on bad data, before any actor starts
        self.resume_from = check_policy_and_resume(cfg, resume, len(self.data))
        self.total = total_steps(cfg, len(self.data))
        self.cursor = DataCursor(len(self.data), cfg.seed)
        self.per_worker = cfg.rollout.images_per_worker
        self.faults: Counter[str] = Counter()
        self.gold = gold_set(cfg) if cfg.watch.every_steps else None  # the watch's held-out pairs, read before any actor starts
        self.watch = Watch(cfg.watch.window)
        self.wandb_id = new_wandb_id() if cfg.logging.wandb else None
        self.learner_restarts = 0  # of this process; a dead learner group restarts from the latest checkpoint

    # -- batches and rollouts ------------------------------------------------------------
    def _batches(self, step: int) -> list[ImageBatch]:
        n = self.cfg.rollout.num_workers
        items = step_items(self.data, self.cursor, step, n * self.per_worker)
        out = []
        for r in range(n):
            part = items[r * self.per_worker : (r + 1) * self.per_worker]
            out.append(ImageBatch(
                step=step,
                part=r,
                ids=[it["id"] for it in part],
                tasks=[it["task"] for it in part],
                degraded=torch.stack([it["degraded"] for it in part]),
                target=torch.stack([it["target"] for it in part]),
            ))
        return out

    def _version_for(self, step: int) -> int:
        return max(0, step - self.cfg.rollout.max_staleness)

    def _update(self, step: int, parts: list[ray.ObjectRef]) -> tuple[dict, ray.ObjectRef]:
        """The learner's update of a step; rollouts lost with a dead node before the learner read them
        are sampled again (the update never started: its arguments could not be fetched)."""
        for attempt in range(self.cfg.rollout.step_retries + 1):
            try:
                return self.learner.update(*parts)
            except ObjectLostError as exc:
                log.warning("step %d: rollouts lost before the update (%s); sampling them again", step, type(exc).__name__)
                _, parts = self.rollouts.redo(step)
        raise RunError(f"step {step}: the rollouts were lost {self.cfg.rollout.step_retries + 1} times before the learner could read them")

    def _launch(self, step: int) -> None:
        t0 = time.perf_counter()
        batches = self.batches.get(step)
        self.batch_wait += time.perf_counter() - t0
        self.rollouts.submit(batches, self._version_for(step))
        self.inflight.add(step)

    # -- checkpoints --------------------------------------------------------------------
    def _save(self, completed: int) -> None:
        """Hand a checkpoint to the background writer. What it holds is fixed now: the learner's state()
        runs before its next update (an actor runs its calls in order) and the refs are taken here."""
        state_ref = self.learner.snapshot()
        pending = {self._version_for(j) for j in range(completed, min(completed + self.cfg.rollout.max_staleness, self.total))}
        refs = {v: self.rollouts.version_refs(v) for v in sorted(pending)}
        extra = {
            "data_position": self.cursor.position(completed, self.images_per_step), "num_images": len(self.data), "faults": dict(self.faults),
            "config": self.cfg.model_dump_json(), "watch": self.watch.state(), "wandb_run_id": self.wandb_id,
        }

        def write() -> UPath:
            learner_state = self.learner.read(state_ref)
            rollout_weights = {v: full_state(*ray.get(r)) for v, r in refs.items() if v != learner_state["version"]}
            return save_checkpoint(self.cfg.checkpoint.dir, completed, learner_state, rollout_weights, extra, self.cfg.checkpoint.keep)

        self.writer.submit(write)

    def _restore(self, ckpt: Checkpoint) -> int:
        self.learner.load_state(ckpt.learner)
        self.faults.clear()
        self.faults.update(ckpt.extra["faults"])
        if "watch" in ckpt.extra:  # checkpoints written before the watch existed have none
            self.watch.load_state(ckpt.extra["watch"])
        self.wandb_id = ckpt.extra.get("wandb_run_id") or self.wandb_id
        for v, w in ckpt.rollout_weights.items():
            self.rollouts.restore_weights(v, w)
        return ckpt.step

    @property
    def images_per_step(self) -> int:
        return self.cfg.rollout.num_workers * self.per_worker

    # -- the reward-hacking watch -----------------------------------------------------------
    def _watch(self, completed: int, train_rewards: list[float]) -> dict[str, float]:
        """Score the gold set with the current policy (trainer/watch.py); its metrics for the step's log."""
        def score(restored, target, degraded, tasks) -> torch.Tensor:
            return self.scorer.score(restored, target, degraded, tasks, group_size=1).rewards

        train_r = sum(train_rewards) / len(train_rewards) if train_rewards else None
        point = measure(completed, self.gold, self.learner.deterministic, score, self.cfg.eval.convention, train_r)
        warning = self.watch.add(point)
        if warning:
            log.warning("%s", warning)
        return point.summary()

    def _write_watch(self) -> None:
        path = self.cfg.logging.dir / "watch.json"
        path.write_text(json.dumps({"gold_ids": self.gold.ids, **self.watch.state()}, indent=1))

    # -- the loop -------------------------------------------------------------------------
    def _start_actors(self) -> None:
        r = self.cfg.rollout
        self.rollouts = RolloutGroup(self.cfg, faults=self.faults)  # placed first: it stops the run when it cannot be
        self.learner = LearnerGroup(self.cfg, self.total)
        info = self.learner.describe()
        devices = self.rollouts.devices()
        print(f"[grpo] learner: {info['ranks']} rank(s) on {info['device']}, {info['policy']} policy, {info['parameters'] / 1e6:.2f} M parameters; weights: {info['weights']}", flush=True)
        print(f"[grpo] {self.rollouts.size} rollout actor(s) on {', '.join(devices)}; G={self.cfg.grpo.group_size}, {self.images_per_step} image(s)/step, staleness bound {r.max_staleness}", flush=True)

    def _log_action_sensitivity(self) -> None:
        """Say at the start whether exploration reaches the output (trainer/diagnostics.py); warn when it mostly does not."""
        degraded = torch.stack([self.data[i]["degraded"] for i in range(min(SENSITIVITY_IMAGES, len(self.data)))])
        sens = self.learner.action_sensitivity(degraded)
        if sens is None:
            print(f"[grpo] action sensitivity: not measured (the {self.cfg.policy.kind} policy has no named actions)", flush=True)
            return
        print("[grpo] " + sens.table().replace("\n", "\n[grpo] "), flush=True)
        self.cfg.logging.dir.mkdir(parents=True, exist_ok=True)
        (self.cfg.logging.dir / "action_sensitivity.json").write_text(json.dumps(sens.metrics(), indent=1))
        warning = sens.warning()
        if warning:
            log.warning("%s", warning)

    def run(self, on_step=None) -> RunResult:
        self.learner: LearnerGroup | None = None
        self.rollouts: RolloutGroup | None = None
        try:
            self._start_actors()
            while True:
                try:
                    return self._loop(on_step)
                except LearnerLost as exc:
                    if self.learner_restarts == self.cfg.learner.max_restarts:
                        raise RunError(f"{exc}; the learner group was restarted {self.learner_restarts} time(s) already (learner.max_restarts)") from None
                    self.learner_restarts += 1
                    self.resume_from = resolve_resume(self.cfg.checkpoint.dir, "auto")
                    where = f"from {self.resume_from.path}" if self.resume_from else "from the start (no checkpoint yet)"
                    log.warning("%s; restarting the learner group %s (restart %d of %d)", exc, where, self.learner_restarts, self.cfg.learner.max_restarts)
                    self.rollouts.drop_work()
                    self.learner = LearnerGroup(self.cfg, self.total)
        finally:  # both groups free their placement groups for whatever runs next on this Ray
            if self.learner is not None:
                self.learner.shutdown()
            if self.rollouts is not None:
                self.rollouts.close()

    def _loop(self, on_step) -> RunResult:
        cfg = self.cfg
        self.inflight: set[int] = set()
        self.batch_wait = 0.0  # the driver's wait for batches since the last step's metrics
        start = self._restore(self.resume_from) if self.resume_from else 0
        if self.resume_from:
            print(f"[grpo] resumed from {self.resume_from.path} at step {start}", flush=True)
        self._log_action_sensitivity()
        version, weights_ref, self.rollouts.frozen = self.learner.weights()
        self.rollouts.publish(version, weights_ref, self.learner.exporter)
        if start >= self.total:
            raise RunError(f"nothing to do: the checkpoint is at step {start} and the run has {self.total} steps")
        wandb_run = WandbRun(cfg.logging.wandb_project, cfg.logging.wandb_mode, self.wandb_id, cfg.name, cfg.model_dump(mode="json")) if self.wandb_id else None
        metrics_log = MetricsLog(cfg.logging.dir, start, cfg.logging.tensorboard, wandb_run, cfg.logging.flush_seconds)
        watching = self.gold is not None
        if watching:
            self.scorer = Scorer(cfg.reward, cfg.judge)
            print(f"[grpo] reward-hacking watch: {len(self.gold)} held-out pairs every {cfg.watch.every_steps} steps ({cfg.logging.dir / 'watch.json'})", flush=True)
            if not any(p.step == start for p in self.watch.points):  # the baseline: in watch.json, not a step's row
                base = self._watch(start, [])
                print(f"[grpo] watch at step {start}: " + ", ".join(f"{k} {v:.4f}" for k, v in base.items()), flush=True)
        train_rewards: list[float] = []
        bar = tqdm(total=self.total, initial=start, desc="GRPO", unit="step", disable=not cfg.logging.progress, dynamic_ncols=True)
        self.writer = CheckpointWriter()
        self.batches = Prefetcher(self._batches, self.total)  # after the sensitivity check: one thread reads the data at a time
        try:
            tick = time.perf_counter()
            for step in range(start, self.total):
                # overlap: steps up to step+S sample with versions the learner has already published,
                # while the learner works on this step
                for j in range(step, min(step + cfg.rollout.max_staleness, self.total - 1) + 1):
                    if j not in self.inflight:
                        self._launch(j)
                wait0 = time.perf_counter()
                rollout, parts = self.rollouts.gather(step)
                self.inflight.discard(step)
                rollout_wait = time.perf_counter() - wait0
                stats, new_weights = self._update(step, parts)
                self.rollouts.publish(step + 1, new_weights, self.learner.exporter)
                metrics = self._step_metrics(rollout, stats, time.perf_counter() - tick, rollout_wait)
                metrics.update(self.rollouts.sync_metrics(step))  # time/weight_sync of the version this step's successors sample with
                metrics["time/batch_wait"], self.batch_wait = self.batch_wait, 0.0
                self.rollouts.forget_before(self._version_for(step + 1))
                completed = step + 1
                train_rewards.append(metrics["reward/mean"])
                if watching and (completed % cfg.watch.every_steps == 0 or completed == self.total):
                    t0 = time.perf_counter()
                    metrics.update(self._watch(completed, train_rewards))
                    metrics["time/watch"] = time.perf_counter() - t0
                    train_rewards = []
                if completed % cfg.checkpoint.every_steps == 0 or completed == self.total:
                    t0 = time.perf_counter()
                    self._save(completed)
                    metrics["time/checkpoint"] = time.perf_counter() - t0  # the driver's wait: the write runs beside the next steps
                tick = time.perf_counter()  # a checkpoint's time is logged apart, not charged to the next step
                metrics_log.log(step, metrics)
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", kl=f"{metrics['kl']:.4f}", idle=f"{metrics['learner_idle_fraction']:.0%}")
                if on_step is not None:
                    on_step(self, step, metrics)
        finally:
            bar.close()
            self.batches.close()
            metrics_log.close()
            if watching:
                self._write_watch()
            last_ckpt = self.writer.close()  # the last write finishes before the run returns, or raises
        return RunResult(self.total, start, last_ckpt, cfg.logging.dir, [], list(self.watch.warnings))

    def _step_metrics(self, rollout: RolloutStats, stats: dict[str, float], step_time: float, rollout_wait: float) -> dict[str, float]:
        r = rollout.rewards
        m = dict(stats)
        m["reward/mean"] = r.mean().item()
        m["reward/std"] = r.std().item() if r.numel() > 1 else 0.0
        m["reward/group_std"] = r.std(dim=1).mean().item()
        m["reward/zero_std_fraction"] = zero_spread_fraction(r)
        for name, values in rollout.terms.items():
            v = values[~torch.isnan(values)]
            if v.numel():
                m[f"reward_terms/{name}/mean"] = v.mean().item()
                m[f"reward_terms/{name}/std"] = v.std().item() if v.numel() > 1 else 0.0
        if rollout.estimate_rewards is not None:  # step-wise rewards: the estimate of each scored sampling step
            for col, s in enumerate(rollout.estimate_steps):
                m[f"reward/at_step{s}/mean"] = rollout.estimate_rewards[:, :, col].mean().item()
                m[f"reward/at_step{s}/group_std"] = rollout.estimate_rewards[:, :, col].std(dim=1).mean().item()
        for stage, seconds in rollout.times.items():
            m[f"time/{stage}"] = seconds
        m["time/step"] = step_time
        m["time/rollout_wait"] = rollout_wait
        busy = stats["time/update"] + stats["time/weight_export"]
        m["learner_idle_fraction"] = max(0.0, 1.0 - busy / step_time) if step_time > 0 else 0.0
        m["throughput/images_per_s"] = r.shape[0] / step_time
        m["throughput/candidates_per_s"] = r.numel() / step_time
        m["epoch"] = self.cursor.epoch(rollout.step + 1, self.images_per_step)
        m["staleness"] = rollout.step - rollout.version
        m["policy_version"] = rollout.version
        m["faults/judge_dropped"] = rollout.judge_dropped
        m["faults/judge_unscored"] = rollout.judge_unscored
        for kind in ("rollout_actor_lost", "rollout_outputs_lost", "service_unavailable", "weight_broadcast_failed"):
            m[f"faults/{kind}"] = self.faults[kind]
        m["rollout/actors_alive"] = sum(self.rollouts.alive)
        m["faults/learner_restarts"] = self.learner_restarts
        return m


def train(cfg: TrainConfig, resume: str = "never", on_step=None) -> RunResult:
    """Preflight (data, checkpoint, services), then the GRPO loop on Ray (joined, or started and shut down here).

    on_step(trainer, step, metrics), if given, runs after every step (tests and benchmarks hook in here).
    Raises RunError, CheckpointError, TrainDataError, DataLayoutError or ServiceUnavailable with a message.
    """
    try:
        cfg = calibrate_psnr_range(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainDataError(f"reward.psnr_range_percentiles: {exc}") from None
    trainer = Trainer(cfg, resume)
    with LocalRewardService.maybe(cfg.reward) as reward_url:
        if reward_url is not None:
            cfg = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"url": reward_url})})
            trainer.cfg = cfg
        random_terms = check_services(cfg.reward, cfg.judge, image_side=cfg.data.crop_size)
        if random_terms:
            print(f"[grpo] the reward service runs on RANDOM weights for: {', '.join(random_terms)} (its development flag; these terms carry no meaning)", flush=True)
        if not cfg.judge.endpoints:
            print("[grpo] no judge configured: R_judge is absent and its weight renormalised away", flush=True)
        for task, reason in tasks_without_term(cfg.reward, cfg.data.tasks).items():
            print(f"[grpo] task {task}: {reason} (reward service; reward.weights.task = {cfg.reward.weights.task:g})", flush=True)
        started = init_ray(cfg)
        try:
            return dataclasses.replace(trainer.run(on_step), random_reward_terms=random_terms)
        finally:
            if started:
                ray.shutdown()


# Failures that stop a run with a message instead of a traceback (a bug still gets its traceback).
STOP_ERRORS = (RolloutGroupError, PlacementError, ConfigError, CheckpointError, PreflightError, RunError, ServiceUnavailable, TrainDataError, DataLayoutError, ProcessError, JudgeOutage, RewardRequestError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GRPO post-training of the restoration policy on Ray (IRPO).")
    parser.add_argument("--config", required=True, help="YAML config (see configs/).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="a.b=VALUE", help="Override a config field (repeatable).")
    parser.add_argument("--resume", default="never", help="'never' (default; stops if checkpoints exist), 'auto' (latest checkpoint in checkpoint.dir, else fresh) or a checkpoint folder.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg, args.resume)
    except STOP_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        if list_checkpoints(cfg.checkpoint.dir):
            command = ["python", "trainer/run.py", "--config", args.config, *(a for o in args.overrides for a in ("--set", o)), "--resume", "auto"]
            print(f"the run can continue from its latest checkpoint in {cfg.checkpoint.dir}:\n  {shlex.join(command)}", file=sys.stderr)
        return 2
    print(f"[grpo] done: {result.steps} steps; checkpoint {result.checkpoint}; metrics {result.run_dir / 'metrics.jsonl'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
