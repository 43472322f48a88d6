"""Model loading: from a weights dir, from the torch.hub cache, and refusal when files are missing.

The files are random weights written in the real formats (open_clip safetensors checkpoint, LAION MLP
state dict, torchvision state dict); downloading the real ones needs a connected machine.
"""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from reward_server import cli, weights
from reward_server.config import load_settings
from reward_server.models import AestheticHead, WeightsMissingError, load_models, lpips_backbone_filename

from reward_support import tiny_clip_env


@pytest.fixture
def tiny_env(monkeypatch):
    for k, v in {**tiny_clip_env(), "REWARD_SERVER_CLIP_PRETRAINED": "test", "REWARD_SERVER_LPIPS_NET": "squeeze",
                 "REWARD_SERVER_DEVICE": "cpu"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("REWARD_SERVER_TOKEN", raising=False)


@pytest.fixture
def weights_dir(tmp_path, tiny_env):
    open_clip.add_model_config(tiny_clip_env()["REWARD_SERVER_CLIP_MODEL_CONFIG"])
    torch.manual_seed(123)
    saved = {
        "clip": open_clip.create_model("tiny-clip").state_dict(),
        "aesthetic": AestheticHead(32).state_dict(),
        "lpips_backbone": torchvision.models.squeezenet1_1().state_dict(),
    }
    for sub in ("clip", "aesthetic", "torchvision"):
        (tmp_path / sub).mkdir()
    save_file({k: v.contiguous() for k, v in saved["clip"].items()}, tmp_path / "clip" / "tiny-clip__test.safetensors")
    torch.save(saved["aesthetic"], tmp_path / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth")
    torch.save(saved["lpips_backbone"], tmp_path / "torchvision" / lpips_backbone_filename("squeeze"))
    return tmp_path, saved


def test_loads_every_model_from_weights_dir(weights_dir):
    root, saved = weights_dir
    models = load_models(load_settings(None, weights_dir=root, precision="float32"), torch.device("cpu"))  # bit for bit
    assert models.random_terms() == []
    assert {p.source for n, p in models.provenance.items() if n not in ("brisque", "niqe", "piqe")} == {"weights_dir"}  # their parameters ship in packages; PIQE has none
    clip_key, lpips_key = "visual.conv1.weight", "3.squeeze.weight"
    assert torch.equal(models.clip.state_dict()[clip_key], saved["clip"][clip_key])
    assert torch.equal(models.aesthetic.layers[7].weight, saved["aesthetic"]["layers.7.weight"])
    assert torch.equal(models.lpips.net.slice2.state_dict()[lpips_key], saved["lpips_backbone"]["features.3.squeeze.weight"])
    # bfloat16: the files' weights are loaded first, then rounded (the aesthetic head stays float32)
    half = load_models(load_settings(None, weights_dir=root, precision="bfloat16"), torch.device("cpu"))
    assert torch.equal(half.clip.state_dict()[clip_key], saved["clip"][clip_key].bfloat16())
    assert torch.equal(half.lpips.net.inner.slice2.state_dict()[lpips_key], saved["lpips_backbone"]["features.3.squeeze.weight"].bfloat16())
    assert torch.equal(half.aesthetic.layers[7].weight, saved["aesthetic"]["layers.7.weight"])


def test_weights_check_command_reports_provenance(weights_dir, capsys):
    root, _ = weights_dir
    weights.main(["--out", str(root), "--check"])
    info = json.loads(capsys.readouterr().out)
    assert info["clip"]["path"].endswith("tiny-clip__test.safetensors") and info["clip"]["random"] is False


def test_lpips_backbone_from_torch_hub_cache(weights_dir, tmp_path_factory, monkeypatch):
    root, _ = weights_dir
    torch_home = tmp_path_factory.mktemp("torch_home")
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    name = lpips_backbone_filename("squeeze")
    (root / "torchvision" / name).rename(torch_home / "hub" / "checkpoints" / name)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    models = load_models(load_settings(None, weights_dir=root), torch.device("cpu"))
    assert models.provenance["lpips_backbone"].source == "cache"


def test_missing_files_refuse_to_start_with_a_clear_message(weights_dir, tmp_path_factory, monkeypatch, capsys):
    root, _ = weights_dir
    (root / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth").unlink()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("empty_torch_home")))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--weights-dir", str(root), "--port", "0"])
    msg = str(exit_.value.code)
    assert "reward model weights are missing" in msg
    assert f"{root}/aesthetic/sac+logos+ava1-l14-linearMSE.pth" in msg
    assert "clip:" not in msg and "lpips_backbone:" not in msg  # only what is actually missing
    assert "reward-server-weights" in msg and "--random-weights" in msg


def test_random_weights_flag_fills_only_missing_models(weights_dir):
    root, _ = weights_dir
    (root / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth").unlink()
    models = load_models(load_settings(None, weights_dir=root, random_weights=True), torch.device("cpu"))
    assert models.random_terms() == ["aesthetic"]
    assert models.provenance["clip"].source == "weights_dir"


def test_aesthetic_head_of_another_width_is_refused(weights_dir):
    root, _ = weights_dir
    torch.save(AestheticHead(768).state_dict(), root / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth")
    with pytest.raises(WeightsMissingError, match="does not take the 32-d embedding"):
        load_models(load_settings(None, weights_dir=root), torch.device("cpu"))


def test_prepare_needs_a_known_pretrained_tag(tiny_env, tmp_path):
    with pytest.raises(SystemExit, match="no pretrained tag 'test'"):
        weights.main(["--out", str(tmp_path / "w")])
