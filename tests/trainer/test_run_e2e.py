"""GRPO runs end to end on local Ray against the real reward service on loopback (random weights,
tiny CLIP), a tiny policy and 32 px crops.

One uninterrupted run is the reference; a run whose rollout actor is killed, a run killed and
resumed, and a run whose reward service is restarted must all end with bit-identical weights,
because every step's images, candidate draws and policy version follow from (seed, step).
The fault test comes last: it replaces the module's reward service.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import ray
import torch
import yaml
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

from devtools.local_servers import ThreadedServer
from devtools.scripted_backend import FAST, ScriptedBackend
from irpo_common.process import ManagedProcess, free_port
from irpo_common.reward_spec import combine_rewards
from judge_server.app import create_app as create_judge_app
from judge_server.settings import JudgeSettings
from tests.trainer.run_fixtures import REPO, REWARD_ARGS, tiny_config, write_photos
from trainer.actors.scoring import JudgeOutage, Scorer, ServiceUnavailable
from trainer.checkpointing import list_checkpoints
from trainer.config import JudgeConfig, RewardConfig, TrainConfig
from trainer.local_service import LocalRewardService
from trainer.metrics_log import read_metrics
from trainer.run import RunError, train

pytestmark = pytest.mark.timeout(900)

STEPS = 6


class RewardHolder:
    """The module's reward service; the restart test swaps it for a new process on the same port."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.services = [LocalRewardService(REWARD_ARGS, log_path=log_dir / "reward-0.log").start(300)]
        self.url = self.services[0].url

    def restart(self) -> LocalRewardService:
        """Stop the service and launch a new one on the same port without waiting for it."""
        old = self.services[-1]
        old.stop()
        new = LocalRewardService(REWARD_ARGS, port=old.port, log_path=self.log_dir / f"reward-{len(self.services)}.log")
        self.services.append(new)
        return new.launch()


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
    holder = RewardHolder(tmp_path_factory.mktemp("reward-logs"))
    yield holder
    for s in holder.services:
        s.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
    temp = tempfile.mkdtemp(prefix="ray-e2e-", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, _temp_dir=temp)
    yield
    ray.shutdown()


def final_policy(run_dir):
    return load_file(str(run_dir / "checkpoints" / f"step-{STEPS:08d}" / "policy.safetensors"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class Crash(Exception):
    """The driver dying inside a run (raised from its on_step hook)."""


def run_until_crash(cfg, step: int) -> None:
    """Run `cfg` and let its driver die right after step `step` (and that step's checkpoint, when one falls due)."""

    def crash(trainer, at, metrics):
        if at == step:
            raise Crash

    with pytest.raises(Crash):
        train(cfg, on_step=crash)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, photos, reward, local_ray):
    run_dir = tmp_path_factory.mktemp("reference")
    subset = run_dir / "subset.json"
    subset.write_text(json.dumps(["denoise/sigma25/astronaut", "denoise/sigma25/chelsea"]))
    cfg = tiny_config(run_dir, photos, reward.url, grpo={"train_on": "subset"}, mining={"subset": str(subset)})
    result = train(cfg)
    return cfg, result


def test_end_to_end_run_logs_checkpoints_and_learns(reference_run):
    cfg, result = reference_run
    run_dir = cfg.logging.dir
    assert result.steps == STEPS and result.start_step == 0
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(STEPS))
    for key in ("reward/mean", "reward/std", "reward/zero_std_fraction", "reward_terms/psnr/mean", "reward_terms/task/mean", "loss/ppo", "loss/sup_l1",
                "loss/cons_l1", "kl", "entropy", "advantage/mean", "advantage/std", "clip_fraction", "grad_norm",
                "time/sample", "time/reward", "time/update", "time/weight_sync", "time/step", "throughput/images_per_s",
                "learner_idle_fraction", "faults/judge_dropped"):
        assert all(r[key] is not None and np.isfinite(r[key]) for r in rows), key
    # overlap: step k > 0 was sampled by version k-1, and the PPO ratio sees that (not the authors' ratio == 1)
    assert rows[0]["staleness"] == 0 and all(r["staleness"] == 1 for r in rows[1:])
    assert all(abs(r["ratio/max"] - 1) > 1e-6 or abs(r["ratio/min"] - 1) > 1e-6 for r in rows[1:])
    assert rows[0]["ratio/max"] == pytest.approx(1.0, abs=1e-4)
    assert rows[0]["coef/sup"] == pytest.approx(0.35) and rows[-1]["coef/sup"] == pytest.approx(0.1)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and rows[-1]["kl"] > 0
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["step-00000002", "step-00000004", "step-00000006"]
    # the run measured at its start how far each action moves the output (the micro policy's rates are inert)
    sensitivity = json.loads((run_dir / "action_sensitivity.json").read_text())
    assert sensitivity["action_change/fre1.r_h"] == 0.0 and sensitivity["action_change/live_share"] < 0.5
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    final = final_policy(run_dir)
    reference = load_file(str(run_dir / "checkpoints" / "step-00000006" / "reference.safetensors"))
    assert any(not torch.equal(final[k], reference[k]) for k in final)  # the policy moved; the reference did not
    first = load_file(str(run_dir / "checkpoints" / "step-00000002" / "reference.safetensors"))
    assert_same_weights(first, reference)


def test_resume_after_kill_continues_with_the_same_step_and_state(tmp_path, photos, reward, reference_run):
    ref_cfg, _ = reference_run
    cfg = ref_cfg.model_copy(update={"logging": ref_cfg.logging.model_copy(update={"dir": tmp_path}),
                                     "checkpoint": ref_cfg.checkpoint.model_copy(update={"dir": tmp_path / "checkpoints"}),
                                     "ray": ref_cfg.ray.model_copy(update={"temp_dir": tempfile.mkdtemp(prefix="ray-kill-", dir="/tmp")})})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(REPO / "trainer" / "run.py"), "--config", str(cfg_file)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    first_ckpt = tmp_path / "checkpoints" / "step-00000002"
    try:
        deadline = time.monotonic() + 300
        while not first_ckpt.is_dir():
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint from the run to kill"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run, its local Ray and actors: one process group
        proc.wait()
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert saved and saved[-1] != f"step-{STEPS:08d}", "the run finished before the kill"
    killed_at = int(saved[-1].split("-")[1])

    result = train(cfg, resume="auto")
    assert result.start_step == killed_at
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(STEPS))  # steps after the checkpoint are not duplicated
    assert_same_weights(final_policy(tmp_path), final_policy(ref_cfg.logging.dir))
    ref_rows = read_metrics(ref_cfg.logging.dir / "metrics.jsonl")
    assert [r["reward/mean"] for r in rows] == [r["reward/mean"] for r in ref_rows]


def test_a_run_on_memory_urls_killed_while_checkpointing_resumes_to_the_reference_weights(photos, reward, reference_run):
    """checkpoint.dir and logging.dir on fsspec's memory filesystem, an object store's stand-in (no atomic
    rename): the run dies after step 4's checkpoint, whose meta.json is then removed as if the kill came
    while writing it; --resume auto skips that folder, resumes from step 2 and ends at the reference weights."""
    ref_cfg, _ = reference_run
    root = f"memory://irpo-e2e-{uuid.uuid4().hex[:8]}"
    cfg = TrainConfig.model_validate({**json.loads(ref_cfg.model_dump_json()), "logging": {**ref_cfg.logging.model_dump(mode="json"), "dir": root},
                                      "checkpoint": {**ref_cfg.checkpoint.model_dump(mode="json"), "dir": f"{root}/checkpoints"}})

    class Crash(Exception):
        pass

    def crash(trainer, step, metrics):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train(cfg, on_step=crash)
    assert [p.name for p in list_checkpoints(cfg.checkpoint.dir)] == ["step-00000002", "step-00000004"]
    (cfg.checkpoint.dir / "step-00000004" / "meta.json").unlink()
    result = train(cfg, resume="auto")
    assert result.start_step == 2
    final = load_safetensors((cfg.checkpoint.dir / f"step-{STEPS:08d}" / "policy.safetensors").read_bytes())
    assert_same_weights(final, final_policy(ref_cfg.logging.dir))
    rows, ref_rows = read_metrics(cfg.logging.dir / "metrics.jsonl"), read_metrics(ref_cfg.logging.dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(STEPS))
    assert [r["reward/mean"] for r in rows] == [r["reward/mean"] for r in ref_rows]
    assert list((cfg.logging.dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not Path("memory:").exists()  # nothing went to a local folder named after the URL


# The diffusion family on the same driver, actors, reward service and checkpoints: a tiny U-Net, 4 DDIM
# steps, the estimate after sampling step 1 scored too (step-wise rewards).
DIFFUSION = {"kind": "diffusion", "diffusion": {"block_out_channels": [16, 32], "sampling_steps": 4,
                                                "rl": {"reward_at": "stepwise", "reward_steps": [1]}}}
DIFFUSION_STEPS = 4


def _diffusion_config(run_dir, photos, reward_url):
    return tiny_config(run_dir, photos, reward_url, policy=DIFFUSION, optim={"max_steps": DIFFUSION_STEPS})


def _final_diffusion_policy(run_dir):
    return load_file(str(run_dir / "checkpoints" / f"step-{DIFFUSION_STEPS:08d}" / "policy.safetensors"))


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory, photos, reward, local_ray):
    run_dir = tmp_path_factory.mktemp("diffusion")
    cfg = _diffusion_config(run_dir, photos, reward.url)
    return cfg, train(cfg)


def test_diffusion_family_runs_end_to_end_with_per_step_statistics(diffusion_run):
    cfg, result = diffusion_run
    rows = read_metrics(cfg.logging.dir / "metrics.jsonl")
    assert result.steps == DIFFUSION_STEPS and [r["step"] for r in rows] == list(range(DIFFUSION_STEPS))
    for key in ("reward/mean", "reward/at_step1/mean", "reward/at_step1/group_std", "reward_terms/psnr/mean", "loss/ppo", "loss/sft",
                "kl", "kl/steps0-0", "kl/steps2-2", "ratio/steps0-0/mean", "ratio/steps1-1/mean", "clip_fraction/steps2-2",
                "advantage/std", "grad_norm", "lr/denoiser", "time/sample", "time/update"):
        assert all(r[key] is not None and np.isfinite(r[key]) for r in rows), key
    # step 0 was sampled by the learner's own version 0: every step's ratio is 1; later steps by the version before
    assert rows[0]["staleness"] == 0 and all(r["staleness"] == 1 for r in rows[1:])
    assert rows[0]["ratio/max"] == pytest.approx(1.0, abs=1e-5) and rows[0]["ratio/min"] == pytest.approx(1.0, abs=1e-5)
    assert all(abs(r["ratio/max"] - 1) > 1e-7 or abs(r["ratio/min"] - 1) > 1e-7 for r in rows[1:])
    assert rows[0]["kl"] == 0.0 and rows[-1]["kl"] > 0
    assert not (cfg.logging.dir / "action_sensitivity.json").exists()  # no named actions to probe
    assert sorted(p.name for p in (cfg.checkpoint.dir).iterdir()) == ["step-00000002", "step-00000004"]


def test_diffusion_run_resumed_after_a_crash_ends_with_bit_identical_weights(tmp_path, photos, reward, diffusion_run):
    """The driver dies right after the step-2 checkpoint (its actors go with it); the resumed run, with fresh
    actors and only the checkpoint's state, ends exactly where the uninterrupted run did."""
    ref_cfg, _ = diffusion_run
    cfg = _diffusion_config(tmp_path, photos, reward.url)

    run_until_crash(cfg, step=1)
    result = train(cfg, resume="auto")
    assert result.start_step == 2
    assert_same_weights(_final_diffusion_policy(tmp_path), _final_diffusion_policy(ref_cfg.logging.dir))
    rows, ref_rows = read_metrics(tmp_path / "metrics.jsonl"), read_metrics(ref_cfg.logging.dir / "metrics.jsonl")
    assert [r["reward/mean"] for r in rows] == [r["reward/mean"] for r in ref_rows]


def test_a_run_with_the_judge_adds_r_judge_to_every_candidate(tmp_path, photos, reward, local_ray):
    """The judge service (over a scripted vision-language backend) scores every candidate with the
    three images; R_judge is logged and R is the weighted combination including it."""
    with ScriptedBackend(logprobs=FAST) as backend, \
            ThreadedServer(create_judge_app(JudgeSettings(backend_url=backend.url, model="judge-model"))) as judge:
        cfg = tiny_config(tmp_path, photos, reward.url, optim={"max_steps": 2}, judge={"url": judge.url, "mode": "fast"})
        train(cfg)
        requests = len(backend.bodies)
        images_per_request = {sum(p["type"] == "image_url" for p in b["messages"][0]["content"]) for b in backend.bodies}
    rows = read_metrics(tmp_path / "metrics.jsonl")
    candidates = 2 * cfg.rollout.images_per_worker * cfg.grpo.group_size
    assert requests == candidates and images_per_request == {3}
    expected = ((4 * 0.6 + 3 * 0.3) / 0.9 - 1) / 4  # FAST's expected score rescaled from 1..5 to [0, 1]
    for r in rows:
        assert r["reward_terms/judge/mean"] == pytest.approx(expected)
        assert r["faults/judge_dropped"] == 0 and r["faults/judge_unscored"] == 0
        terms = {k.split("/")[1]: r[k] for k in r if k.startswith("reward_terms/") and k.endswith("/mean")}
        without_judge = {k: v for k, v in terms.items() if k != "judge"}
        # R is linear in the terms, so the step's mean R is the combination of the mean terms
        assert r["reward/mean"] == pytest.approx(combine_rewards(terms)[0], abs=1e-5)
        assert r["reward/mean"] != pytest.approx(combine_rewards(without_judge)[0], abs=1e-5)


@pytest.fixture
def ray_head(tmp_path):
    """`ray start --head --block` with its own temp dir on loopback, dashboard (job server) on; stopped
    through its own process group, never with `ray stop` (which would hit every Ray of the user)."""
    temp = tempfile.mkdtemp(prefix="ray-head-", dir="/tmp")
    dash = free_port()
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    cmd = [str(REPO / ".venv" / "bin" / "ray") if (REPO / ".venv" / "bin" / "ray").is_file() else "ray",
           "start", "--head", "--block", f"--temp-dir={temp}", f"--port={free_port()}", "--node-ip-address=127.0.0.1",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true", "--num-cpus=2",
           # the agent's default port 52365 is held by any other Ray on the machine (e.g. a local Ray an
           # earlier test left up): its job agent then never registers and submits are refused
           f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
           "--disable-usage-stats"]
    head = ManagedProcess("ray head", cmd, f"http://127.0.0.1:{dash}", ready_path="/api/version", env=env,
                          log_path=tmp_path / "head.log")
    with head.start(240):
        yield head.url, head.env
        head.stop(timeout_s=5)  # SIGTERM, then SIGKILL to its process group: `ray start --block` took over 30 s to exit on SIGTERM


def test_ray_job_submit_runs_a_short_job_on_a_started_head(tmp_path, photos, reward, ray_head):
    address, env = ray_head
    cfg = tiny_config(tmp_path, photos, reward.url, optim={"max_steps": 2})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    ray_cli = REPO / ".venv" / "bin" / "ray"
    submit = [str(ray_cli) if ray_cli.is_file() else "ray", "job", "submit", "--address", address, "--",
              sys.executable, str(REPO / "trainer" / "run.py"), "--config", str(cfg_file)]
    # The job server answers before the head's job agent registers; until then it refuses with this text.
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(submit, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        if "No available agent to submit job" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[grpo] done: 2 steps" in done.stdout
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [0, 1]
    assert (tmp_path / "checkpoints" / "step-00000002" / "policy.safetensors").is_file()


def _scorer_inputs(n=4, side=32):
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(n, 3, side, side, generator=g)
    degraded = (ref + 0.2 * torch.randn(n, 3, side, side, generator=g)).clamp(0, 1)
    restored = (ref + 0.05 * torch.randn(n, 3, side, side, generator=g)).clamp(0, 1)
    return dict(restored=restored, reference=ref, degraded=degraded, tasks=["denoise"] * n, group_size=2)


def test_scorer_combines_terms_and_applies_the_judge_outage_policy(reward):
    # a real judge service whose vision-language backend is down: it answers 503
    settings = JudgeSettings(backend_url=f"http://127.0.0.1:{free_port()}/v1", retries=0, connect_timeout_s=1.0)
    with ThreadedServer(create_judge_app(settings)) as judge:
        no_judge = Scorer(RewardConfig(url=reward.url), JudgeConfig()).score(**_scorer_inputs())
        assert no_judge.judge_dropped == 0 and "judge" not in no_judge.terms
        for i in range(4):
            terms = {k: float(v[i]) for k, v in no_judge.terms.items()}
            assert no_judge.rewards[i].item() == pytest.approx(combine_rewards(terms)[0])

        drop = Scorer(RewardConfig(url=reward.url), JudgeConfig(url=judge.url, retries=0, on_outage="drop")).score(**_scorer_inputs())
        assert drop.judge_dropped == 4
        torch.testing.assert_close(drop.rewards, no_judge.rewards)  # judge weight renormalised away, never a made-up score

        stop = Scorer(RewardConfig(url=reward.url), JudgeConfig(url=judge.url, retries=0, on_outage="stop"))
        with pytest.raises(JudgeOutage, match="failed and judge.on_outage is 'stop'"):
            stop.score(**_scorer_inputs())

    # a judge that refuses the batch (here: a token the scorer does not send, 401) follows the same policy
    with ScriptedBackend(logprobs=FAST) as backend, \
            ThreadedServer(create_judge_app(JudgeSettings(backend_url=backend.url, model="judge-model", token="s3cret"))) as judge:
        refused = Scorer(RewardConfig(url=reward.url), JudgeConfig(url=judge.url, retries=0, on_outage="drop")).score(**_scorer_inputs())
        assert refused.judge_dropped == 4
        torch.testing.assert_close(refused.rewards, no_judge.rewards)
        with pytest.raises(JudgeOutage, match="401"):
            Scorer(RewardConfig(url=reward.url), JudgeConfig(url=judge.url, retries=0, on_outage="stop")).score(**_scorer_inputs())

    # an answer without a score (unparsed) in the first group: that group is scored without the
    # judge term, like the judge-free scorer; the second group keeps it
    partial = Scorer(RewardConfig(url=reward.url), JudgeConfig(url="http://127.0.0.1:9"))
    partial.judge = SimpleNamespace(judge_batch=lambda *a, **k: [SimpleNamespace(reward=r) for r in (None, 1.0, 0.0, 1.0)])
    mixed = partial.score(**_scorer_inputs())
    assert mixed.judge_unscored == 1
    torch.testing.assert_close(mixed.rewards[:2], no_judge.rewards[:2])
    assert not torch.allclose(mixed.rewards[2:], no_judge.rewards[2:])
    assert mixed.terms["judge"][:2].isnan().all() and mixed.terms["judge"][2:].tolist() == [0.0, 1.0]

    dead = Scorer(RewardConfig(url=f"http://127.0.0.1:{free_port()}", retry_for_s=0), JudgeConfig())
    with pytest.raises(ServiceUnavailable, match="reward service"):
        dead.score(**_scorer_inputs())


def test_crashed_actor_and_restarted_reward_service_do_not_lose_the_run(tmp_path, photos, reward, reference_run):
    """A rollout actor killed (Ray restarts it, the step is retried), then the reward service stopped
    and started again on its port while a rollout is in flight: the run ends as the reference did."""
    ref_cfg, _ = reference_run
    cfg = ref_cfg.model_copy(update={"logging": ref_cfg.logging.model_copy(update={"dir": tmp_path}),
                                     "checkpoint": ref_cfg.checkpoint.model_copy(update={"dir": tmp_path / "checkpoints"})})

    def faults(trainer, step, metrics):
        if step == 1:  # step 2's rollout is in flight on this actor now
            ray.kill(trainer.rollouts.actors[0], no_restart=False)
        if step == 3:  # step 5's rollout is launched next and meets a service still starting; the client retries
            reward.restart()

    train(cfg, on_step=faults)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows[0]["faults/rollout_actor_lost"] == 0 and rows[-1]["faults/rollout_actor_lost"] >= 1
    old, new = reward.services
    assert old.proc.poll() is not None
    assert "POST /v1/score/batch" in new.log_path.read_text()  # the last steps were scored by the restarted service
    assert_same_weights(final_policy(tmp_path), final_policy(ref_cfg.logging.dir))


def test_watch_and_wandb_log_beside_r_and_resume_continues_the_same_wandb_run(tmp_path, photos, reward, local_ray, monkeypatch):
    """The reward-hacking watch scores its held-out pairs every 2 steps and W&B (offline) logs the run; a run resumed
    from an earlier checkpoint writes to the same W&B run and measures the same watch points again."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_config(tmp_path, photos, reward.url, optim={"max_steps": 4}, watch={"every_steps": 2, "images": 2},
                      logging={"wandb": True, "wandb_mode": "offline"})
    result = train(cfg)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    watched = [r for r in rows if "gold/psnr" in r]
    assert [r["step"] for r in watched] == [1, 3]  # after steps 2 and 4, beside that step's training R
    assert all(np.isfinite(r["gold/reward"]) and np.isfinite(r["gold/ssim"]) and np.isfinite(r["reward/mean"]) for r in watched)
    watch = json.loads((tmp_path / "watch.json").read_text())
    assert [p["step"] for p in watch["points"]] == [0, 2, 4] and len(watch["gold_ids"]) == 2
    assert watch["warnings"] == result.watch_warnings
    run_id = torch.load(tmp_path / "checkpoints" / "step-00000004" / "trainer_state.pt", weights_only=False)["extra"]["wandb_run_id"]
    assert [p.name.rsplit("-", 1)[-1] for p in (tmp_path / "wandb").glob("offline-run-*")] == [run_id]

    shutil.rmtree(tmp_path / "checkpoints" / "step-00000004")  # as if killed after its step-2 checkpoint
    resumed = train(cfg, resume="auto")
    assert resumed.start_step == 2
    again = json.loads((tmp_path / "watch.json").read_text())
    assert again["points"] == watch["points"]  # exact resume: the same outputs and scores at steps 2 and 4
    runs = {p.name.rsplit("-", 1)[-1] for p in (tmp_path / "wandb").glob("offline-run-*")}
    assert runs == {run_id}


def test_a_killed_learner_restarts_from_the_latest_checkpoint_and_ends_as_the_reference(tmp_path, photos, reward, reference_run):
    ref_cfg, _ = reference_run
    cfg = ref_cfg.model_copy(update={"logging": ref_cfg.logging.model_copy(update={"dir": tmp_path}),
                                     "checkpoint": ref_cfg.checkpoint.model_copy(update={"dir": tmp_path / "checkpoints"})})
    killed = []

    def kill_learner(trainer, step, metrics):
        if step == 2 and not killed:  # after step-00000002 was saved; the next update meets a dead learner
            killed.append(step)
            ray.kill(trainer.learner.ranks[0])

    train(cfg, on_step=kill_learner)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows[-1]["faults/learner_restarts"] == 1
    assert_same_weights(final_policy(tmp_path), final_policy(ref_cfg.logging.dir))
    no_restarts = cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"max_restarts": 0}),
                                         "logging": cfg.logging.model_copy(update={"dir": tmp_path / "again"}),
                                         "checkpoint": cfg.checkpoint.model_copy(update={"dir": tmp_path / "again" / "checkpoints"})})
    killed.clear()
    with pytest.raises(RunError, match=r"learner rank died.*restarted 0 time\(s\) already \(learner.max_restarts\)"):
        train(no_restarts, on_step=kill_learner)
