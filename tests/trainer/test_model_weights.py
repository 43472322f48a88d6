"""Weights IO: AdaIR's key names, Lightning .ckpt loading with a strict check, our safetensors."""

import pytest
import torch

from tests.trainer.policy_fixtures import seeded_policy
from trainer.model import WeightsError, build_policy, load_policy_weights, model_preset, save_policy


# Names and shapes from AdaIR's public net/model.py for the paper config (dim 48, heads[2] = 4).
ADAIR_PAPER_KEYS = {
    "patch_embed.proj.weight": (48, 3, 3, 3),
    "encoder_level1.0.norm1.body.weight": (48,),
    "encoder_level1.0.norm1.body.bias": (48,),
    "encoder_level1.0.attn.temperature": (1, 1, 1),
    "encoder_level1.0.attn.qkv.weight": (144, 48, 1, 1),
    "encoder_level1.0.attn.qkv_dwconv.weight": (144, 1, 3, 3),
    "encoder_level1.0.ffn.project_in.weight": (254, 48, 1, 1),
    "latent.7.ffn.project_out.weight": (384, 1021, 1, 1),
    "down1_2.body.0.weight": (24, 48, 3, 3),
    "up4_3.body.0.weight": (768, 384, 3, 3),
    "reduce_chan_level3.weight": (192, 384, 1, 1),
    "decoder_level1.3.attn.qkv.weight": (288, 96, 1, 1),
    "refinement.3.norm2.body.bias": (96,),
    "output.weight": (3, 96, 3, 3),
    "fre1.conv.weight": (384, 3, 3, 3),
    "fre1.conv1.weight": (384, 3, 3, 3),
    "fre1.score_gen.bias": (2,),
    "fre1.para1": (384, 1, 1),
    "fre1.channel_cross_l.temperature": (4, 1, 1),
    "fre1.channel_cross_l.kv_dwconv.weight": (768, 1, 3, 3),
    "fre1.frequency_refine.SpatialGate.spatial.weight": (1, 2, 7, 7),
    "fre1.frequency_refine.ChannelGate.mlp.0.weight": (24, 384, 1, 1),
    "fre1.frequency_refine.proj.bias": (384,),
    "fre2.channel_cross_agg.temperature": (4, 1, 1),
    "fre3.rate_conv.0.weight": (12, 96, 1, 1),
    "fre3.rate_conv.2.weight": (2, 12, 1, 1),
}


def _lightning_ckpt(path, state):
    torch.save({"epoch": 3, "global_step": 99, "pytorch-lightning_version": "2.1.0", "state_dict": state, "optimizer_states": [], "lr_schedulers": []}, path)


def test_paper_config_has_adair_names_and_size():
    policy = build_policy(model_preset("paper"))
    state = policy.backbone.state_dict()
    for key, shape in ADAIR_PAPER_KEYS.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    n = sum(p.numel() for p in policy.backbone_parameters())
    assert 28.5e6 < n < 29.0e6  # AdaIR: about 28.8 M


def test_adair_lightning_ckpt_loads_strictly_and_reports_fresh_heads(tmp_path):
    source, target = seeded_policy(1), seeded_policy(2)
    path = tmp_path / "adair5d.ckpt"
    _lightning_ckpt(path, {f"net.{k}": v for k, v in source.backbone.state_dict().items()})
    heads_before = {k: v.clone() for k, v in target.rate_heads.state_dict().items()}
    report = load_policy_weights(target, path)
    assert report.kind == "adair-ckpt" and report.loaded == len(source.backbone.state_dict())
    assert report.fresh_heads and all(k.startswith(("rate_heads.", "fuse_heads.")) for k in report.fresh_heads)
    assert "freshly initialised" in report.summary()
    for k, v in source.backbone.state_dict().items():
        assert torch.equal(target.backbone.state_dict()[k], v), k
    for k, v in target.rate_heads.state_dict().items():
        assert torch.equal(heads_before[k], v)


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape", "outside-prefix"])
def test_mismatching_ckpt_is_refused_with_the_keys_named(tmp_path, damage):
    policy = seeded_policy(1)
    state = {f"net.{k}": v for k, v in policy.backbone.state_dict().items()}
    if damage == "missing":
        del state["net.fre2.para1"]
        needle = "fre2.para1"
    elif damage == "unexpected":
        state["net.fre4.para1"] = torch.zeros(1)
        needle = "fre4.para1"
    elif damage == "shape":
        state["net.output.weight"] = torch.zeros(3, 5, 3, 3)
        needle = "output.weight"
    else:
        state["loss_fn.weight"] = torch.zeros(1)
        needle = "loss_fn.weight"
    path = tmp_path / "bad.ckpt"
    _lightning_ckpt(path, state)
    with pytest.raises(WeightsError, match=needle.replace(".", r"\.")):
        load_policy_weights(seeded_policy(2), path)


def test_wrong_size_config_is_refused(tmp_path):
    path = save_policy(seeded_policy(1), tmp_path / "micro.safetensors")
    with pytest.raises(WeightsError, match="does not fit"):
        load_policy_weights(build_policy(model_preset("tiny")), path)


def test_safetensors_round_trip_reproduces_outputs(tmp_path):
    source, target = seeded_policy(1), seeded_policy(2)
    x = torch.rand(1, 3, 32, 32)
    path = save_policy(source, tmp_path / "sub" / "policy.safetensors")
    report = load_policy_weights(target, path)
    assert report.kind == "safetensors" and not report.fresh_heads
    with torch.no_grad():
        assert torch.equal(source.deterministic(x), target.deterministic(x))


def test_build_policy_loads_the_configured_checkpoint(tmp_path):
    path = save_policy(seeded_policy(1), tmp_path / "p.safetensors")
    cfg = model_preset("micro").model_copy(update={"checkpoint": path})
    loaded = build_policy(cfg)
    assert torch.equal(loaded.backbone.output.weight, seeded_policy(1).backbone.output.weight)


def test_unreadable_files_give_clear_errors(tmp_path):
    policy = seeded_policy(1)
    with pytest.raises(WeightsError, match="not found"):
        load_policy_weights(policy, tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="safetensors"):
        load_policy_weights(policy, junk)
    junk_ckpt = tmp_path / "junk.ckpt"
    junk_ckpt.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot read"):
        load_policy_weights(policy, junk_ckpt)
    other = tmp_path / "w.bin"
    other.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unknown weights format"):
        load_policy_weights(policy, other)
