"""Supervised pre-training: it learns, writes loadable weights, and its CLI fails clearly."""

import pytest
import torch
import torch.nn.functional as F

from tests.trainer.policy_fixtures import seeded_policy
from trainer.config import TrainConfig
from trainer.data import build_train_dataset
from trainer.demo.corpus import write_standin_corpus
from trainer.model import build_policy, load_policy_weights, model_preset
from trainer.policies import build_policy as build_policy_of
from trainer.evaluate import main as evaluate_main
from trainer.mining import main as mining_main
from trainer.pretrain import main as pretrain_main
from trainer.pretrain import pretrain



def test_pretrain_reduces_l1_and_writes_weights(tmp_path):
    root = write_standin_corpus(tmp_path / "demo", n_train=3, n_test=1, size=(40, 48))
    cfg = TrainConfig(
        model=model_preset("micro"),
        data={"root": root, "tasks": ["lowlight"], "crop_size": 32},
        pretrain={"steps": 25, "batch_size": 3, "lr": 3e-3, "log_every": 5, "output": tmp_path / "w/model.safetensors"},
    )
    batch = [build_train_dataset(cfg.data)[i] for i in range(3)]
    x, y = torch.stack([b["degraded"] for b in batch]), torch.stack([b["target"] for b in batch])
    before = seeded_policy(cfg.seed, cfg.model)
    path = pretrain(cfg)
    assert path == cfg.pretrain.output and path.is_file()
    after = build_policy(cfg.model)
    load_policy_weights(after, path)
    with torch.no_grad():
        l1_before = F.l1_loss(before.deterministic(x), y).item()
        l1_after = F.l1_loss(after.eval().deterministic(x), y).item()
    assert l1_after < 0.8 * l1_before


def test_cli_reports_a_missing_config(tmp_path):
    with pytest.raises(SystemExit, match="config file not found"):
        pretrain_main(["--config", str(tmp_path / "none.yaml")])


def test_evaluate_and_mining_clis_refuse_to_run_without_weights(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"pretrain: {{output: {tmp_path / 'absent.safetensors'}}}\n")
    for main in (evaluate_main, mining_main):
        with pytest.raises(SystemExit, match="no weights at .*absent.safetensors"):
            main(["--config", str(cfg)])


def test_pretrain_of_the_diffusion_family_lowers_the_diffusion_loss_and_writes_loadable_weights(tmp_path):
    root = write_standin_corpus(tmp_path / "demo", n_train=3, n_test=1, size=(40, 48))
    cfg = TrainConfig(
        policy={"kind": "diffusion", "diffusion": {"block_out_channels": [16, 32], "sampling_steps": 4}},
        data={"root": root, "tasks": ["lowlight"], "crop_size": 32},
        pretrain={"steps": 20, "batch_size": 3, "lr": 3e-3, "log_every": 10, "output": tmp_path / "w/model.safetensors"},
    )
    batch = [build_train_dataset(cfg.data)[i] for i in range(3)]
    x, y = torch.stack([b["degraded"] for b in batch]), torch.stack([b["target"] for b in batch])
    torch.manual_seed(cfg.seed)
    before = build_policy_of(cfg.policy_section)
    path = pretrain(cfg)
    after = build_policy_of(cfg.with_policy_weights(path).policy_section)
    assert any(not torch.equal(v, before.state_dict()[k]) for k, v in after.state_dict().items())

    def loss(policy):  # the same 16 timestep and noise draws for both
        with torch.no_grad():
            return policy.diffusion_loss(x.repeat(16, 1, 1, 1), y.repeat(16, 1, 1, 1), torch.Generator().manual_seed(1)).mean().item()

    assert loss(after) < 0.7 * loss(before)


def test_pretrain_with_ema_decay_writes_the_moving_average_not_the_last_weights(tmp_path):
    root = write_standin_corpus(tmp_path / "demo", n_train=3, n_test=1, size=(40, 48))

    def run(ema_decay, name):
        cfg = TrainConfig(
            policy={"kind": "diffusion", "diffusion": {"block_out_channels": [16, 32], "sampling_steps": 4}},
            data={"root": root, "tasks": ["lowlight"], "crop_size": 32},
            pretrain={"steps": 8, "batch_size": 3, "lr": 3e-3, "log_every": 8, "output": tmp_path / name, "ema_decay": ema_decay},
        )
        torch.manual_seed(cfg.seed)
        start = build_policy_of(cfg.policy_section).state_dict()
        return start, build_policy_of(cfg.with_policy_weights(pretrain(cfg)).policy_section).state_dict()

    start, last = run(None, "last.safetensors")
    _, ema = run(0.9, "ema.safetensors")
    _, no_memory = run(1e-9, "ema0.safetensors")  # an average that forgets at once is the last weights
    assert all(torch.allclose(no_memory[k], last[k], atol=1e-6) for k in last)
    assert not all(torch.allclose(ema[k], last[k], atol=1e-4) for k in last)
    # the same seeded run: the average of its trajectory lags behind the last weights, towards the start
    moved = lambda w: sum((w[k] - start[k]).pow(2).sum() for k in start).item()  # noqa: E731
    assert 0 < moved(ema) < moved(last)


def test_clean_pair_is_a_clean_crop_of_another_exposure_and_contrast_as_input_and_target():
    from trainer.pretrain import clean_pair

    x = torch.rand(3, 16, 16)
    g = torch.Generator().manual_seed(0)
    ratios, means = [], []
    for _ in range(300):
        out = clean_pair({"id": "a", "degraded": torch.zeros_like(x), "target": x}, g)
        assert out["id"] == "a" and torch.equal(out["degraded"], out["target"])
        assert 0 <= out["target"].min() and out["target"].max() <= 1
        ratios.append((out["target"].std() / x.std()).item())
        means.append(out["target"].mean().item())
    # contrast kept with weight a ~ U(0.3, 1); the level pulls the mean down to dark crops and up towards 0.7 at most
    assert 0.3 - 1e-5 <= min(ratios) < 0.35 and 0.95 < max(ratios) <= 1 + 1e-5
    assert min(means) < 0.2 and max(means) < 0.7  # x has mean 0.5: 0.15 at the darkest blend


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_pretrain_replaces_about_clean_fraction_of_its_items_by_clean_pairs(tmp_path, monkeypatch, fraction):
    import trainer.pretrain as pretrain_module

    root = write_standin_corpus(tmp_path / "demo", n_train=3, n_test=1, size=(40, 48))
    cfg = TrainConfig(model=model_preset("micro"), data={"root": root, "tasks": ["lowlight"], "crop_size": 32},
                      pretrain={"steps": 40, "batch_size": 4, "output": tmp_path / "m.safetensors", "clean_fraction": fraction})
    seen = []
    monkeypatch.setattr(pretrain_module, "fit_supervised", lambda policy, batch, *a, **k: seen.extend(it for s in range(40) for it in batch(s)))
    pretrain(cfg)
    clean = sum(torch.equal(it["degraded"], it["target"]) for it in seen)  # a low-light input never equals its target
    assert len(seen) == 160 and (clean == 0 if fraction == 0 else 55 < clean < 105)
