"""configs/cpu-smoke-x4.yaml end to end on local Ray against the real reward service: a tiny RANDOM
x4-upscaler folder trained with LoRA on the sr task (inputs 4x smaller than the outputs, no task term); only adapters
travel and are checkpointed, the reference is the base model (an empty reference file), a killed and resumed run ends
with bit-identical adapters and EMA of the adapters (learner.ema_decay), and the checkpoint exports (live or EMA) to a
folder the diffusers pipeline runs."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from devtools.tiny_latent import build_x4
from tests.trainer.run_fixtures import REPO
from tests.trainer.test_run_e2e import assert_same_weights, local_ray, photos, reward, run_until_crash  # noqa: F401 (fixtures)
from trainer.actors.scoring import tasks_without_term
from trainer.config import load_config
from trainer.data.post_training import load_training_data
from trainer.export import export
from trainer.metrics_log import read_metrics
from trainer.run import main, train

pytestmark = pytest.mark.timeout(1200)
STEPS = 4


@pytest.fixture(scope="module")
def x4_folder(tmp_path_factory):
    return build_x4(tmp_path_factory.mktemp("tiny-x4") / "x4")


def smoke_config(run_dir, photos, reward_url, folder):
    return load_config(REPO / "configs" / "cpu-smoke-x4.yaml", [
        f"policy.diffusion.pretrained={folder}", f"data.root={photos}", f"reward.url={reward_url}", "reward.start_local=false",
        f"checkpoint.dir={run_dir / 'checkpoints'}", f"logging.dir={run_dir}", f"optim.max_steps={STEPS}", "learner.ema_decay=0.9",
    ])


def adapters(run_dir, part="policy"):
    return load_file(str(run_dir / "checkpoints" / f"step-{STEPS:08d}" / f"{part}.safetensors"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, photos, reward, local_ray, x4_folder):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("x4-run")
    cfg = smoke_config(run_dir, photos, reward.url, x4_folder)
    return cfg, train(cfg)


def test_x4_lora_run_trains_only_adapters_against_the_base_reference(smoke_run):
    cfg, result = smoke_run
    rows = read_metrics(cfg.logging.dir / "metrics.jsonl")
    assert result.steps == STEPS and [r["step"] for r in rows] == list(range(STEPS))
    assert rows[0]["ratio/max"] == pytest.approx(1.0, abs=1e-5) and rows[0]["ratio/min"] == pytest.approx(1.0, abs=1e-5)
    assert rows[0]["kl"] == 0.0 and rows[-1]["kl"] > 0
    state = adapters(cfg.logging.dir)
    assert state and all("lora_" in k for k in state)
    ckpt = cfg.checkpoint.dir / f"step-{STEPS:08d}"
    assert load_file(str(ckpt / "reference.safetensors")) == {}
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in state.items() if "lora_B" in k)  # the adapters moved


def test_x4_smoke_run_is_the_sr_task_without_a_task_term(smoke_run):
    cfg, _ = smoke_run
    item = load_training_data(cfg)[0]
    assert cfg.data.tasks == ["sr"] and item["degraded"].shape == (3, 8, 8) and item["target"].shape == (3, 32, 32)
    rows = read_metrics(cfg.logging.dir / "metrics.jsonl")
    assert all("reward_terms/psnr/mean" in r and "reward_terms/task/mean" not in r for r in rows)  # scored at 32 px, R_task absent
    assert list(tasks_without_term(cfg.reward, ["sr", "denoise"])) == ["sr"]  # what the run says at its start


def test_killed_x4_lora_run_resumes_to_identical_adapters(tmp_path, photos, reward, smoke_run, x4_folder):  # noqa: F811
    """The driver dies right after the step-2 checkpoint; `trainer/run.py --resume auto` (in this process, on the
    same local Ray) passes preflight (a pipeline folder is not built on the meta device; the LoRA reference file is
    empty) and ends with the uninterrupted run's adapters and rewards, bit for bit."""
    ref_cfg, _ = smoke_run
    cfg = smoke_config(tmp_path, photos, reward.url, x4_folder)

    run_until_crash(cfg, step=1)
    assert sorted(p.name for p in cfg.checkpoint.dir.iterdir()) == ["step-00000002"]
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    assert main(["--config", str(cfg_file), "--resume", "auto"]) == 0
    rows, ref_rows = read_metrics(tmp_path / "metrics.jsonl"), read_metrics(ref_cfg.logging.dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(STEPS))
    assert [r["reward/mean"] for r in rows] == [r["reward/mean"] for r in ref_rows]
    assert_same_weights(adapters(tmp_path), adapters(ref_cfg.logging.dir))
    assert_same_weights(adapters(tmp_path, "ema"), adapters(ref_cfg.logging.dir, "ema"))


def test_exported_checkpoint_runs_in_the_upscale_pipeline(smoke_run, tmp_path):
    from diffusers import StableDiffusionUpscalePipeline

    cfg, _ = smoke_run
    out = export(cfg.checkpoint.dir / f"step-{STEPS:08d}", tmp_path / "export", ema=True)
    pipe = StableDiffusionUpscalePipeline.from_pretrained(out, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(prompt="", image=torch.rand(1, 3, 8, 8), num_inference_steps=2, output_type="pt").images
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()
