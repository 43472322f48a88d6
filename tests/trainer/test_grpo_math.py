"""Unit tests of the pure GRPO mathematics (trainer/grpo)."""

import math

import pytest
import torch

from trainer.config import OptimConfig
from trainer.policies import ParameterGroup
from trainer.grpo import (
    HistoryTracker,
    LossCoefs,
    beta_kl,
    best_candidate_index,
    build_optimizer,
    difficulty_weights,
    group_advantages,
    grpo_loss,
    linear_anneal,
    ppo_clip_objective,
)


def test_group_advantages_normalise_each_group_separately():
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 30.0, 30.0]])
    a = group_advantages(r, eps=0.0)
    expected0 = (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / math.sqrt(1.25)
    torch.testing.assert_close(a[0], expected0)
    torch.testing.assert_close(a[1], torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    torch.testing.assert_close(a.mean(dim=1), torch.zeros(2), atol=1e-6, rtol=0)


def test_group_advantages_equal_rewards_give_zero_and_no_std_variant_only_centres():
    r = torch.tensor([[0.5, 0.5, 0.5], [0.0, 0.2, 0.4]])
    a = group_advantages(r, eps=1e-6)
    assert torch.equal(a[0], torch.zeros(3))
    torch.testing.assert_close(group_advantages(r, normalize_std=False)[1], torch.tensor([-0.2, 0.0, 0.2]))


def test_group_advantages_reject_flat_input():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(4))


def _centred(r: torch.Tensor) -> torch.Tensor:
    return r - r.mean(dim=1, keepdim=True)


def test_history_tracker_uses_the_batch_spread_until_min_count_then_the_image_history():
    t = HistoryTracker(buffer_size=4, min_count=4, eps=0.0)
    r1 = torch.tensor([[0.0, 1.0], [10.0, 13.0]])
    a1 = t.advantages(["a", "b"], r1)
    torch.testing.assert_close(a1, _centred(r1) / _centred(r1).pow(2).mean().sqrt())  # pooled spread of the batch
    a2 = t.advantages(["a"], torch.tensor([[2.0, 4.0]]))  # "a" has 2 < 4 past rewards: still the batch
    torch.testing.assert_close(a2, torch.tensor([[-1.0, 1.0]]))
    r3 = torch.tensor([[5.0, 9.0]])
    a3 = t.advantages(["a"], r3)  # past centred rewards of "a": -0.5, 0.5, -1, 1
    torch.testing.assert_close(a3, _centred(r3) / torch.tensor([0.25, 0.25, 1.0, 1.0]).mean().sqrt())
    assert t.state_dict()["history"]["a"] == [-1.0, 1.0, -2.0, 2.0]  # the buffer keeps the last 4


def test_history_does_not_mix_the_inputs_of_other_visits():
    """A new crop shifts an image's reward level; the history only carries the spread, so the shift of an
    earlier visit cannot move today's advantages (a history of raw rewards centred them by other inputs)."""
    def run(first_visit_offset: float) -> torch.Tensor:
        t = HistoryTracker(buffer_size=8, min_count=2, eps=0.0)
        t.advantages(["a"], torch.tensor([[0.1, 0.3]]) + first_visit_offset)
        return t.advantages(["a"], torch.tensor([[0.6, 0.7]]))

    torch.testing.assert_close(run(0.0), run(0.5))
    assert run(0.0)[0, 1] > 0 > run(0.0)[0, 0]  # centred by today's group, whatever earlier visits scored


def test_history_counts_the_current_rewards_once():
    past = torch.tensor([[0.0, 2.0]])
    now = torch.tensor([[0.0, 10.0]])
    t = HistoryTracker(buffer_size=8, min_count=2, eps=0.0)
    t.advantages(["a"], past)
    torch.testing.assert_close(t.advantages(["a"], now), torch.tensor([[-5.0, 5.0]]))  # history only: spread of `past` (1)
    u = HistoryTracker(buffer_size=8, min_count=2, eps=0.0, with_batch=True)
    u.advantages(["a"], past)
    pool = torch.tensor([1.0, 1.0, 25.0, 25.0])  # squared centred rewards: the past visit, then this batch once
    torch.testing.assert_close(u.advantages(["a"], now), _centred(now) / pool.mean().sqrt())


def test_history_with_batch_pools_the_image_history_with_the_whole_current_batch():
    t = HistoryTracker(buffer_size=4, min_count=2, eps=0.0, with_batch=True)
    t.advantages(["a", "b"], torch.tensor([[0.0, 1.0], [0.0, 3.0]]))
    r = torch.tensor([[0.0, 2.0], [5.0, 5.0]])
    out = t.advantages(["a", "b"], r)
    batch_sq = _centred(r).flatten() ** 2
    torch.testing.assert_close(out[0], _centred(r)[0] / torch.cat([torch.full((2,), 0.25), batch_sq]).mean().sqrt())
    history_only = HistoryTracker(buffer_size=4, min_count=2, eps=0.0)
    history_only.advantages(["a", "b"], torch.tensor([[0.0, 1.0], [0.0, 3.0]]))
    assert not torch.allclose(out, history_only.advantages(["a", "b"], r))


@pytest.mark.parametrize("with_batch", [False, True])
def test_history_gives_a_group_of_equal_rewards_zero_advantage(with_batch):
    t = HistoryTracker(buffer_size=8, min_count=2, eps=1e-6, with_batch=with_batch)
    first = t.advantages(["a", "b"], torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.9]]))  # batch statistics
    assert torch.equal(first[0], torch.zeros(4))
    later = t.advantages(["a", "b"], torch.tensor([[0.8, 0.8, 0.8, 0.8], [0.0, 0.4, 0.4, 0.4]]))  # history statistics
    assert torch.equal(later[0], torch.zeros(4)) and later[1].abs().sum() > 0


def test_history_tracker_state_round_trip_and_refuses_a_raw_reward_history():
    t = HistoryTracker(buffer_size=3, min_count=1)
    t.advantages(["x"], torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    u = HistoryTracker(buffer_size=3, min_count=1)
    u.load_state_dict(t.state_dict())
    r = torch.tensor([[0.0, 9.0]])
    torch.testing.assert_close(u.advantages(["x"], r.clone()), t.advantages(["x"], r.clone()))
    with pytest.raises(ValueError, match="raw rewards"):
        u.load_state_dict({"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="min_count"):
        HistoryTracker(buffer_size=2, min_count=3)


def test_ppo_ratio_comes_from_recorded_log_probs_and_clip_acts():
    old = torch.log(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    new = torch.log(torch.tensor([1.0, 1.5, 0.5, 1.1])).requires_grad_()
    adv = torch.tensor([1.0, 1.0, -1.0, 1.0])
    loss, ratio, clipped = ppo_clip_objective(new, old, adv, clip_eps=0.2)
    torch.testing.assert_close(ratio, torch.tensor([1.0, 1.5, 0.5, 1.1]))
    # ratio 1.5 with A>0 and 0.5 with A<0 leave the trust region: clipped value, zero gradient
    torch.testing.assert_close(loss.detach(), torch.tensor([-1.0, -1.2, 0.8, -1.1]))
    assert clipped.tolist() == [False, True, True, False]
    loss.sum().backward()
    assert new.grad[1] == 0 and new.grad[2] == 0
    torch.testing.assert_close(new.grad[[0, 3]], torch.tensor([-1.0, -1.1]))


def test_ppo_unclipped_side_keeps_gradient_for_bad_moves():
    # ratio 1.5 with a negative advantage: pessimistic min takes the unclipped branch
    new = torch.log(torch.tensor([1.5])).requires_grad_()
    loss, _, clipped = ppo_clip_objective(new, torch.zeros(1), torch.tensor([-1.0]), clip_eps=0.2)
    loss.sum().backward()
    assert not clipped.item() and new.grad.item() == pytest.approx(1.5)


def _beta_kl_reference(a1, b1, a2, b2):
    lg, dg = torch.lgamma, torch.digamma
    return (lg(a1 + b1) - lg(a1) - lg(b1) - lg(a2 + b2) + lg(a2) + lg(b2)
            + (a1 - a2) * dg(a1) + (b1 - b2) * dg(b1) + (a2 - a1 + b2 - b1) * dg(a1 + b1))


def test_beta_kl_matches_the_closed_form_and_sums_actions():
    g = torch.Generator().manual_seed(0)
    a, b, ra, rb = (1.0 + 4 * torch.rand(3, 12, generator=g) for _ in range(4))
    kl = beta_kl(a, b, ra, rb)
    assert kl.shape == (3,)
    torch.testing.assert_close(kl, _beta_kl_reference(a, b, ra, rb).sum(-1))
    assert (kl > 0).all()
    torch.testing.assert_close(beta_kl(a, b, a, b), torch.zeros(3), atol=1e-6, rtol=0)


def test_beta_kl_sends_no_gradient_into_the_reference():
    a = torch.full((1, 2), 2.0, requires_grad=True)
    ra = torch.full((1, 2), 3.0, requires_grad=True)
    beta_kl(a, a, ra, ra).sum().backward()
    assert a.grad is not None and ra.grad is None


def test_linear_anneal():
    assert linear_anneal(0.35, 0.1, 0, 11) == pytest.approx(0.35)
    assert linear_anneal(0.35, 0.1, 5, 11) == pytest.approx(0.225)
    assert linear_anneal(0.35, 0.1, 10, 11) == pytest.approx(0.1)
    assert linear_anneal(0.35, 0.1, 99, 11) == pytest.approx(0.1)


def test_best_candidate_index_is_flat_and_image_major():
    r = torch.tensor([[0.1, 0.9, 0.2], [0.7, 0.1, 0.0]])
    assert best_candidate_index(r).tolist() == [1, 3]


def test_difficulty_weights_scale_by_the_hardest_image():
    target = torch.zeros(3, 3, 2, 2)
    pred = torch.stack([torch.full((3, 2, 2), v) for v in (0.1, 0.4, 0.2)])
    torch.testing.assert_close(difficulty_weights(pred, target), torch.tensor([0.25, 1.0, 0.5]))


def _loss_inputs(b=2, g=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = b * g
    return dict(
        log_prob=torch.randn(n, generator=gen).requires_grad_(),
        old_log_prob=torch.randn(n, generator=gen),
        advantages=torch.randn(n, generator=gen),
        entropy=torch.rand(n, generator=gen).requires_grad_(),
        kl=torch.rand(n, generator=gen).requires_grad_(),
        best_images=torch.rand(b, 3, 4, 4, generator=gen).requires_grad_(),
        target=torch.rand(b, 3, 4, 4, generator=gen),
        deterministic=torch.rand(b, 3, 4, 4, generator=gen).requires_grad_(),
    )


COEFS = LossCoefs(clip_eps=0.2, kl=0.01, entropy=0.01, sup=0.35, cons=0.2)


def test_grpo_loss_is_the_sum_of_its_parts():
    x = _loss_inputs()
    loss, stats = grpo_loss(**x, coefs=COEFS)
    surr, _, _ = ppo_clip_objective(x["log_prob"], x["old_log_prob"], x["advantages"], 0.2)
    sup = (x["best_images"] - x["target"]).abs().mean()
    cons = (x["deterministic"] - x["best_images"]).abs().mean()
    manual = surr.mean() - 0.01 * x["entropy"].mean() + 0.01 * x["kl"].mean() + 0.35 * sup + 0.2 * cons
    torch.testing.assert_close(loss, manual)
    assert stats["loss/sup_l1"] == pytest.approx(sup.item())
    loss.backward()
    # the consistency term moves the deterministic output, not the best candidate
    assert x["best_images"].grad.abs().sum().item() == pytest.approx(0.35)  # only lambda_sup * L1(best, GT)
    assert x["deterministic"].grad.abs().sum() > 0


def test_grpo_loss_adaptive_weights_switch_between_rl_and_sft():
    for w, rl_grad, sft_grad in ((torch.ones(2), True, False), (torch.zeros(2), False, True)):
        x = _loss_inputs()
        loss, stats = grpo_loss(**x, coefs=COEFS, sample_weights=w)
        loss.backward()
        assert (x["log_prob"].grad.abs().sum() > 0) == rl_grad
        assert (x["best_images"].grad.abs().sum() > 0) == sft_grad
        assert x["kl"].grad.abs().sum() > 0  # the KL is never weighted away
        assert stats["adaptive_weight/mean"] == w.mean().item()


def test_grpo_loss_rejects_candidates_not_splitting_into_images():
    x = _loss_inputs(b=2, g=2)
    x["target"] = torch.rand(3, 3, 4, 4)
    with pytest.raises(ValueError, match="do not split"):
        grpo_loss(**x, coefs=COEFS)


class _TwoPart(torch.nn.Module):
    def __init__(self, overlap=False):
        super().__init__()
        self.body = torch.nn.Linear(2, 2)
        self.head = torch.nn.Linear(2, 1)
        self.overlap = overlap

    def parameter_groups(self):
        heads = list(self.head.parameters()) + (list(self.body.parameters()) if self.overlap else [])
        return [ParameterGroup("backbone", list(self.body.parameters())), ParameterGroup("heads", heads)]


def test_optimizer_gives_the_heads_their_multiplier():
    opt = build_optimizer(_TwoPart(), OptimConfig(lr=1e-4, head_lr_mult=6.0))
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": pytest.approx(1e-4), "heads": pytest.approx(6e-4)}
    with pytest.raises(ValueError, match="overlaps an earlier group"):
        build_optimizer(_TwoPart(overlap=True), OptimConfig())


def test_zero_spread_fraction_counts_groups_whose_rewards_are_all_equal():
    from trainer.grpo.advantages import zero_spread_fraction

    rewards = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4], [0.7, 0.7, 0.7, 0.7 + 1e-6]])
    assert zero_spread_fraction(rewards) == pytest.approx(1 / 3)


def test_per_term_advantages_normalise_each_term_in_its_group_before_the_weighted_sum():
    from trainer.grpo.advantages import per_term_advantages

    # term a spreads 100x more than term b and disagrees with it: summed first, a alone sets the order
    a = torch.tensor([[0.0, 1.0, 0.0, 1.0], [5.0, 5.0, 5.0, 5.0]]) * 100
    b = torch.tensor([[1.0, 0.0, 0.5, 0.25], [0.1, 0.2, 0.3, 0.4]])
    w = {"a": torch.tensor([0.5, 0.5]), "b": torch.tensor([0.5, 0.5])}
    adv = per_term_advantages({"a": a, "b": b}, w)
    summed = group_advantages(0.5 * a + 0.5 * b)
    assert summed[0].argmax() in (1, 3)  # a's large spread decides the plain sum
    expected = 0.5 * group_advantages(a) + 0.5 * group_advantages(b)
    expected = expected / torch.sqrt(expected.var(unbiased=False) + 1e-6)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert adv[0, 0] > adv[0, 2]  # b now counts: candidate 0 (a 0, b 1) beats candidate 2 (a 0, b 0.5)
    # group 1: a is equal over the group and adds nothing; b alone orders it
    assert torch.equal(adv[1].argsort(), torch.arange(4))


def test_term_weights_follow_r_and_renormalise_a_term_a_group_lacks():
    from irpo_common.reward_spec import RewardWeights
    from trainer.grpo.advantages import term_weights

    nan = float("nan")
    terms = {"psnr": torch.rand(2, 4), "task": torch.rand(2, 4), "judge": torch.tensor([[0.5] * 4, [nan] * 4])}
    w = term_weights(terms, RewardWeights())
    # group 0 has the judge: R = 0.6 R_gen + 0.1 judge + 0.3 task (R_gen is psnr alone here)
    assert w["psnr"][0] == pytest.approx(0.6) and w["judge"][0] == pytest.approx(0.1) and w["task"][0] == pytest.approx(0.3)
    # group 1 lacks it: its weight is renormalised away, as in R
    assert w["judge"][1] == 0 and w["psnr"][1] == pytest.approx(0.6 / 0.9) and w["task"][1] == pytest.approx(0.3 / 0.9)


def test_per_term_aggregation_needs_group_advantages_and_final_rewards():
    from trainer.config import TrainConfig

    with pytest.raises(ValueError, match="grpo.advantage to 'group'"):
        TrainConfig.model_validate({"grpo": {"reward_aggregation": "per_term", "advantage": "history"}})
    with pytest.raises(ValueError, match="reward_at 'final'"):
        TrainConfig.model_validate({"grpo": {"reward_aggregation": "per_term"}, "policy": {"kind": "diffusion", "diffusion": {"rl": {"reward_at": "stepwise", "reward_steps": [1]}}}})
    TrainConfig.model_validate({"grpo": {"reward_aggregation": "per_term"}})
