"""Latent diffusion restorers from real diffusers pipeline folders (tiny, RANDOM, built like diffusers'
test fixtures by devtools/tiny_latent.py and loaded from disk): the x4 upscaler, LDM super-resolution
and a ControlNet restorer, with and without LoRA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from devtools.tiny_latent import BUILDERS
from trainer.actors.learner import Learner
from trainer.actors.messages import Rollout
from trainer.config import DiffusionConfig, TrainConfig
from trainer.policies import optimizer_groups
from trainer.policies.diffusion import build_diffusion_policy
from trainer.policies.diffusion.lora import adapters_disabled
from trainer.policies.diffusion.pipeline_folder import X4_SCALING_FACTOR, PipelineFolderError

# kind -> (output_scale, input side): the super-resolution models restore a 4x smaller input
KINDS = {"x4": (4, 8), "ldm_sr": (4, 8), "controlnet": (1, 16)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-latent")
    return {kind: BUILDERS[kind](root / kind) for kind in KINDS}


def build(folders, kind, folder=None, **fields):
    cfg = DiffusionConfig(pretrained=folder or folders[kind], output_scale=KINDS[kind][0], sampling_steps=3, **fields)
    return build_diffusion_policy(cfg)


def images(kind, n=2, seed=0):
    side = KINDS[kind][1]
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def perturb_adapters(policy, seed=1):
    """Non-zero lora_B, so the adapters change the output (fresh ones start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("kind", list(KINDS))
def test_ratio_is_one_before_the_first_update_with_lora_and_a_smaller_micro_batch(folders, kind):
    policy = build(folders, kind, lora={"rank": 4})
    perturb_adapters(policy)
    x = images(kind)
    sample = policy.sample(x, 2, torch.Generator().manual_seed(0))
    scale = KINDS[kind][0]
    assert sample.images.shape == (4, 3, x.shape[2] * scale, x.shape[3] * scale)
    traj = sample.trajectory
    assert (traj.cond_noise is not None) == (kind == "x4")  # only the x4 upscaler noises its condition
    full = policy.evaluate(x, traj)
    assert (full.log_prob - traj.log_prob).abs().max() < 1e-5
    # the learner's micro-batch: one image (its 2 candidates), one step
    part = policy.evaluate(x[1:], traj.rows(2, 4), steps=torch.tensor([1]))
    assert (part.log_prob - traj.log_prob[2:4, 1:2]).abs().max() < 1e-5


def test_lora_off_is_the_base_model_and_the_reference_of_a_fresh_run_is_the_policy_exactly(folders):
    base = build(folders, "x4")
    lora = build(folders, "x4", lora={"rank": 4})
    x = images("x4")
    traj = lora.sample(x, 2, torch.Generator().manual_seed(0)).trajectory
    reference = lora.shared_reference()
    # fresh adapters (lora_B = 0): the policy and its adapters-off reference agree bit for bit, so KL = 0 and ratio = 1
    assert torch.equal(reference.evaluate(x, traj).mean, lora.evaluate(x, traj).mean)
    perturb_adapters(lora)
    # a model with peft layers runs its float sums in another order than the plain diffusers model (measured
    # ~1e-6 on this fixture), so "the base model" holds to float32 rounding, not bit for bit
    with adapters_disabled(lora.denoisers):
        assert (lora.deterministic(x) - base.deterministic(x)).abs().max() < 1e-5
    assert (lora.deterministic(x) - base.deterministic(x)).abs().max() > 1e-3  # and the adapters are back on after the block
    assert (reference.evaluate(x, traj).mean - base.evaluate(x, traj).mean).abs().max() < 1e-5
    assert reference.state_dict() == {}
    assert all(p.requires_grad for n, p in lora.named_parameters() if "lora_" in n)  # the switch restored trainability


def test_lora_state_is_the_adapters_only_and_loads_into_a_fresh_policy(folders):
    policy = build(folders, "controlnet", lora={"rank": 2})
    perturb_adapters(policy)
    state = policy.state_dict()
    assert state and all("lora_" in k for k in state)
    assert any(k.startswith("controlnet.") for k in state) and any(k.startswith("unet.") for k in state)
    frozen = [n for n, p in policy.named_parameters() if "lora_" not in n]
    assert frozen and not any(p.requires_grad for n, p in policy.named_parameters() if "lora_" not in n)
    trainable = sum(p.numel() for g in optimizer_groups(policy, 1e-4) for p in g["params"])
    assert trainable == sum(v.numel() for v in state.values())
    fresh = build(folders, "controlnet", lora={"rank": 2})
    fresh.load_state_dict(state)
    x = images("controlnet")
    assert torch.equal(fresh.deterministic(x), policy.deterministic(x))
    with pytest.raises(RuntimeError, match="missing"):
        fresh.load_state_dict({k: v for k, v in list(state.items())[1:]})


@pytest.mark.parametrize("kind", ["x4", "ldm_sr"])
def test_merged_export_matches_the_lora_policy_and_runs_in_the_diffusers_pipeline(folders, kind, tmp_path):
    import diffusers

    policy = build(folders, kind, lora={"rank": 4})
    perturb_adapters(policy)
    out = tmp_path / "export"
    policy.save_pretrained(out)
    merged = build(folders, kind, folder=out)
    x = images(kind)
    # compared where the chain runs: VQModel.decode quantises, so a 1e-7 latent difference may pick another code
    traj = policy.sample(x, 2, torch.Generator().manual_seed(0)).trajectory
    assert (merged.evaluate(x, traj).log_prob - traj.log_prob).abs().max() < 1e-5
    assert not any("lora" in k for k in merged.state_dict())
    pipe_cls = json.loads((out / "model_index.json").read_text())["_class_name"]
    pipe = getattr(diffusers, pipe_cls).from_pretrained(out, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if kind == "x4":
        result = pipe(prompt="", image=x[:1], num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    else:
        result = pipe(image=x[:1] * 2 - 1, num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)).images
        result = torch.as_tensor(result).permute(0, 3, 1, 2)
    assert result.shape == (1, 3, x.shape[2] * 4, x.shape[3] * 4) and torch.isfinite(result).all()


def test_x4_upscaler_scaling_factor_is_forced_and_others_come_from_the_config(folders, tmp_path):
    copy = tmp_path / "x4"
    shutil.copytree(folders["x4"], copy)
    vae_cfg = json.loads((copy / "vae" / "config.json").read_text())
    (copy / "vae" / "config.json").write_text(json.dumps({**vae_cfg, "scaling_factor": 0.18215}))
    assert build(folders, "x4", folder=copy).codec.scaling_factor == X4_SCALING_FACTOR
    cn = json.loads((folders["controlnet"] / "vae" / "config.json").read_text())["scaling_factor"]
    assert build(folders, "controlnet").codec.scaling_factor == cn
    assert build(folders, "ldm_sr").codec.scaling_factor == 1.0  # LDMSuperResolutionPipeline decodes its latents unscaled


def _edit(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("damage, fields, message", [
    (lambda f: shutil.rmtree(f / "text_encoder"), {}, "text_encoder/ is missing"),
    (lambda f: _edit(f / "model_index.json", unet=["diffusers", "UNet3DConditionModel"]), {}, "supported: UNet2DModel, UNet2DConditionModel"),
    (lambda f: _edit(f / "unet" / "config.json", in_channels=9), {}, "9 input and 4 output channels"),
    (lambda f: shutil.rmtree(f / "low_res_scheduler"), {}, "low_res_scheduler"),
    (lambda f: None, {"noise_level": 400}, "noise_level=400 exceeds 99"),
    (lambda f: None, {"train_timesteps": 500}, "scheduler says 1000"),
])
def test_a_bad_folder_or_setting_is_one_clear_error_before_loading(folders, tmp_path, damage, fields, message):
    copy = tmp_path / "x4"
    shutil.copytree(folders["x4"], copy)
    damage(copy)
    with pytest.raises(PipelineFolderError, match=message.replace("(", r"\(")):
        build(folders, "x4", folder=copy, **fields)


def test_a_file_of_prompt_embeddings_replaces_the_text_encoder(folders, tmp_path):
    policy = build(folders, "x4", prompt="a sharp photo")
    embeds = tmp_path / "prompt.safetensors"
    save_file({"prompt_embeds": policy.prompt_embeds.contiguous()}, str(embeds))
    copy = tmp_path / "x4"
    shutil.copytree(folders["x4"], copy)
    shutil.rmtree(copy / "text_encoder")
    shutil.rmtree(copy / "tokenizer")
    other = build(folders, "x4", folder=copy, prompt_embeds=embeds)
    x = images("x4")
    assert torch.equal(other.deterministic(x), policy.deterministic(x))
    assert not hasattr(policy, "text_encoder")  # the encoder was dropped after encoding the prompt


def test_guidance_is_the_same_in_sampling_and_re_evaluation(folders):
    policy = build(folders, "x4", guidance_scale=3.0, prompt="sharp", negative_prompt="blurry")
    x = images("x4", n=1)
    traj = policy.sample(x, 2, torch.Generator().manual_seed(0)).trajectory
    assert (policy.evaluate(x, traj).log_prob - traj.log_prob).abs().max() < 1e-5
    assert not torch.equal(policy.deterministic(x), build(folders, "x4", prompt="sharp").deterministic(x))


@pytest.mark.parametrize("name, rank", [("cpu-smoke-x4", 4), ("cpu-smoke-controlnet", 4), ("paper-diffusion-x4", 32)])
def test_latent_presets_load_with_their_lora_rank(name, rank):
    from tests.trainer.run_fixtures import REPO
    from trainer.config import load_config

    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.policy.kind == "diffusion" and cfg.policy.diffusion.lora.rank == rank


def test_gradient_checkpointing_gives_the_same_gradients(folders):
    x = images("ldm_sr", n=1)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # lora_A starts random
        policy = build(folders, "ldm_sr", lora={"rank": 2}, gradient_checkpointing=checkpointing).train()
        perturb_adapters(policy)
        assert policy.unet.is_gradient_checkpointing == checkpointing
        traj = policy.sample(x, 2, torch.Generator().manual_seed(0)).trajectory
        policy.evaluate(x, traj).log_prob.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters() if p.requires_grad]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_residual_frame_and_start_strength_on_latent_models_keep_ratio_one(folders, kind):
    """Main's chain-frame options on every latent kind: the origin is the degraded image's encoding at the output size."""
    policy = build(folders, kind, lora={"rank": 2}, residual=True, start_strength=0.5)
    perturb_adapters(policy)
    x = images(kind)
    sample = policy.sample(x, 2, torch.Generator().manual_seed(0))
    traj = sample.trajectory
    assert (policy.evaluate(x, traj).log_prob - traj.log_prob).abs().max() < 1e-5
    scale = KINDS[kind][0]
    up = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", antialias=True).clamp(0, 1) if scale > 1 else x
    origin = policy.codec.encode(up).repeat_interleave(2, dim=0)
    assert torch.allclose(sample.images, policy.codec.decode(traj.latents[:, -1] + origin), atol=1e-5)
    # under the residual the start at strength 0.5 is the first noise draw scaled to t0 (the origin's frame is 0)
    z0 = torch.randn((4, traj.num_steps, *traj.latents.shape[2:]), generator=torch.Generator().manual_seed(0))[:, 0]
    assert torch.allclose(traj.latents[:, 0], (1 - policy.schedule.alpha_bar(traj.timesteps[0])).sqrt() * z0, atol=1e-6)
    assert int(traj.timesteps[0]) == policy.schedule.train_timesteps // 2 - 1


def test_weight_sync_sends_only_the_adapters_and_a_rollout_policy_applies_them(folders):
    """trainer/actors/weight_sync.py on a LoRA policy: the changing packet is the trainable adapters, the frozen one
    is empty (every process reads the base from the folder), and a rollout actor's policy then samples identically."""
    from trainer.actors.weight_sync import export_weights, load_packet

    learner = build(folders, "controlnet", lora={"rank": 2})
    perturb_adapters(learner)
    changing, frozen = export_weights(learner, 3), export_weights(learner, 3, "frozen")
    trainable = {n: p for n, p in learner.named_parameters() if p.requires_grad}
    assert sorted(changing.tensors()) == sorted(trainable) and all("lora_" in n for n in trainable)
    assert changing.nbytes >= sum(p.numel() * p.element_size() for p in trainable.values()) and frozen.tensors() == {}
    cfg = DiffusionConfig(pretrained=folders["controlnet"], output_scale=1, sampling_steps=3, lora={"rank": 2})
    rollout = build_diffusion_policy(cfg, load_weights=False)
    x = images("controlnet")
    assert not torch.equal(rollout.deterministic(x), learner.deterministic(x))
    load_packet(rollout, frozen)
    load_packet(rollout, changing)
    assert torch.equal(rollout.deterministic(x), learner.deterministic(x))
    g = torch.Generator
    assert torch.equal(rollout.sample(x, 2, g().manual_seed(1)).images, learner.sample(x, 2, g().manual_seed(1)).images)


def test_x4_lora_learner_micro_batches_give_the_whole_batch_gradient(folders):
    """The learner's micro-batches on the x4 upscaler with LoRA: a slice of the trajectory keeps its rows' condition
    noise, and the diffusion loss's batch-wide draw includes the low-resolution condition's noise."""

    def grads(micro):
        diffusion = {"pretrained": str(folders["x4"]), "output_scale": 4, "sampling_steps": 3, "lora": {"rank": 2},
                     "rl": {"sft_coef": 1.0, "gt_likelihood_coef": 0.1}}
        cfg = TrainConfig.model_validate({"policy": {"kind": "diffusion", "diffusion": diffusion}, "grpo": {"group_size": 2},
                                          "rollout": {"images_per_worker": 3}, "learner": {"micro_batch_images": micro}})
        torch.manual_seed(0)
        learner = Learner(cfg, total_steps=2)
        perturb_adapters(learner.policy)
        x = images("x4", n=3)
        target = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
        s = learner.policy.sample(x, 2, torch.Generator().manual_seed(0))
        rewards = -(s.images - target.repeat_interleave(2, 0)).abs().flatten(1).mean(1).view(3, 2)
        rollout = Rollout(step=0, version=0, ids=["a", "b", "c"], tasks=["denoise"] * 3, degraded=x, target=target, trajectory=s.trajectory,
                          rewards=rewards, terms={}, estimate_rewards=None, estimate_steps=s.estimate_steps)
        _, step_loss = learner.objective(learner, rollout)
        learner._backward(step_loss, 0, 3, 0)
        return [p.grad.clone() for p in learner.policy.parameters() if p.grad is not None]

    whole, parts = grads(None), grads(1)
    assert len(whole) == len(parts) and sum(g.abs().sum() for g in whole) > 0
    scale = max(a.abs().max().item() for a in whole)
    for a, b in zip(whole, parts):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4 * scale)
