"""The shared reward combination (irpo_common.reward_spec) that the service and the trainer use."""

from __future__ import annotations

import pytest

from irpo_common.reward_spec import RewardWeights, combine_rewards

ALL = {"clip_similarity": 0.8, "lpips": 0.6, "aesthetic": 0.4, "psnr": 0.5, "ssim": 0.9, "clip_iqa": 0.3,
       "task": 0.7, "judge": 0.25}


def test_paper_weights_when_everything_is_present():
    reward, applied = combine_rewards(ALL)
    r_gen = 0.25 * 0.8 + 0.25 * 0.6 + 0.15 * 0.4 + 0.20 * 0.5 + 0.15 * 0.9  # clip_iqa weighs 0 by default
    assert reward == pytest.approx(0.6 * r_gen + 0.1 * 0.25 + 0.3 * 0.7)
    assert sum(applied.values()) == pytest.approx(1.0)
    assert applied["psnr"] == pytest.approx(0.6 * 0.2)


def test_trainer_adds_a_judge_value_the_service_never_saw():
    without = {k: v for k, v in ALL.items() if k != "judge"}
    service_reward, service_applied = combine_rewards(without)
    assert service_applied["task"] == pytest.approx(0.3 / 0.9)
    reward, applied = combine_rewards({**without, "judge": 1.0})
    assert applied["judge"] == pytest.approx(0.1)
    assert reward == pytest.approx(0.9 * service_reward + 0.1 * 1.0)


def test_missing_generic_terms_renormalise_inside_r_gen():
    reward, applied = combine_rewards({"aesthetic": 0.4, "clip_iqa": 0.9, "task": None, "judge": 0.5},
                                      {"clip_iqa": 0.15})
    assert applied == pytest.approx({"aesthetic": 0.6 / 0.7 * 0.5, "clip_iqa": 0.6 / 0.7 * 0.5, "judge": 0.1 / 0.7})
    assert reward == pytest.approx(0.6 / 0.7 * 0.65 + 0.1 / 0.7 * 0.5)


def test_weights_object_and_errors():
    reward, applied = combine_rewards({"psnr": 1.0, "task": 0.0}, RewardWeights(gen=1, task=1))
    assert reward == pytest.approx(0.5) and applied == pytest.approx({"psnr": 0.5, "task": 0.5})
    with pytest.raises(ValueError, match="unknown reward term"):
        combine_rewards({"sharpness": 1.0})
    with pytest.raises(ValueError, match="non-finite"):
        combine_rewards({"psnr": float("nan")})
    with pytest.raises(ValueError, match="no computed term has a positive weight"):
        combine_rewards({"clip_iqa": 0.5})
    with pytest.raises(ValueError, match="unknown name"):
        combine_rewards({"psnr": 0.5}, {"psnr_weight": 1.0})
