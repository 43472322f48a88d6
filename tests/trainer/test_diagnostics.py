"""The action-sensitivity diagnostic tells inert actions from live ones, and its CLI prints it."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from tests.trainer.policy_fixtures import seeded_policy
from trainer.demo.corpus import write_standin_corpus
from trainer.diagnose import main
from trainer.diagnostics import ACTION_NAMES, LEVEL_8BIT, Sensitivity, action_sensitivity, group_spread
from trainer.model import model_preset, save_policy


def _images(n=3, side=16):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, side, side, generator=g), torch.rand(n, 3, side, side, generator=g)


def test_adair_init_leaves_rates_and_output_gates_inert_and_is_warned():
    # para1 = 0 (AdaIR's init) multiplies the whole frequency branch: the rates and g_o cannot act
    x, _ = _images()
    sens = action_sensitivity(seeded_policy(0), x)
    assert list(sens.change) == list(ACTION_NAMES)
    for name, change in sens.change.items():
        if not name.endswith("g_f"):
            assert change == 0.0, name
    assert set(sens.live) <= {"fre1.g_f", "fre2.g_f", "fre3.g_f"}
    warning = sens.warning()
    assert warning is not None and "INERT" in warning and "fre1.r_h" in warning
    assert "| fre1.r_h | 0 | 0.000 | no |" in sens.table()


def test_a_live_frequency_branch_moves_the_rates_and_gates():
    x, _ = _images()
    live = seeded_policy(0, model_preset("micro").model_copy(update={"fre_para1_init": 8.0, "fre_temperature_init": 30.0}))
    sens = action_sensitivity(live, x)
    assert all(sens.change[f"fre{m}.{a}"] > 0 for m in (1, 2, 3) for a in ("r_h", "r_l", "g_o"))
    assert len(sens.live) > 3


def test_the_warning_threshold_is_half_of_the_actions_at_one_8bit_level():
    above, below = 2 * LEVEL_8BIT, 0.5 * LEVEL_8BIT
    six = Sensitivity({n: above if i < 6 else below for i, n in enumerate(ACTION_NAMES)}, 0.05, 0.95, 1)
    five = Sensitivity({n: above if i < 5 else below for i, n in enumerate(ACTION_NAMES)}, 0.05, 0.95, 1)
    assert six.live_share == 0.5 and six.warning() is None
    assert len(five.live) == 5 and "only 5 of 12" in five.warning()
    with pytest.raises(ValueError, match="0 < low < high < 1"):
        action_sensitivity(seeded_policy(0), _images()[0], low=0.9, high=0.1)


def test_group_spread_is_zero_for_a_policy_that_ignores_its_actions():
    x, y = _images()
    policy = seeded_policy(0)
    policy.backbone.output.weight.data.zero_()  # the output is the input, whatever the actions
    spread = group_spread(policy, x, y, ["denoise"] * 3, 4, torch.Generator().manual_seed(0),
                          score=lambda restored, ref, deg, tasks: -(restored - ref).abs().flatten(1).mean(1))
    assert spread.psnr == [0.0] * 3 and spread.ssim == [0.0] * 3 and spread.reward == [0.0] * 3
    assert all(c == 0.0 for c in action_sensitivity(policy, x).change.values())
    live = group_spread(seeded_policy(0), x, y, ["denoise"] * 3, 4, torch.Generator().manual_seed(0))
    assert all(p > 0 for p in live.psnr) and live.reward is None and "R: not measured" in live.summary()


def test_cli_prints_the_table_the_spread_and_the_warning(tmp_path, capsys):
    root = write_standin_corpus(tmp_path / "demo", n_train=2, n_test=1, size=(32, 32))
    weights = save_policy(seeded_policy(0), tmp_path / "w.safetensors")
    cfg = {"model": dict(model_preset("micro").model_dump(exclude={"checkpoint"})),
           "data": {"root": str(root), "tasks": ["denoise"], "crop_size": 16, "noise_sigmas": [25]}, "grpo": {"train_on": "all"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))
    assert main(["--config", str(tmp_path / "c.yaml"), "--weights", str(weights), "--images", "2", "--no-reward"]) == 0
    out = capsys.readouterr().out
    assert "| fre3.g_o |" in out and "live actions:" in out and "WARNING: actions are INERT" in out
    assert "within-group spread over 2 images, G = 4" in out and "PSNR range median" in out
