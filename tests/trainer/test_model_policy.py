"""The restoration policy: Beta log-probs/entropies, determinism, gradients, sampling, the mask."""

import torch

from tests.trainer.policy_fixtures import seeded_policy
from trainer.model.adair import soft_lowpass_mask
from trainer.model import RestorationPolicy, model_preset



def _trained_like(policy):
    # At initialisation para1 = 0 silences each module's output and unit attention temperatures
    # make the cross-attention nearly uniform; a trained model has neither.
    for m in policy.backbone.frequency_modules():
        torch.nn.init.constant_(m.para1, 0.5)
        for att in (m.channel_cross_l, m.channel_cross_h, m.channel_cross_agg):
            torch.nn.init.constant_(att.temperature, 8.0)
    return policy


def _images(b=2, size=32, seed=1):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _beta_log_density(x, a, b):
    # closed form, written out independently of torch.distributions
    return (a - 1) * torch.log(x) + (b - 1) * torch.log1p(-x) + torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b)


def test_sample_shapes_order_and_log_prob_match_evaluate_actions():
    policy, x = seeded_policy(), _images(b=2)
    s = policy.sample(x, group_size=3, generator=torch.Generator().manual_seed(0))
    actions, log_prob = s.trajectory.actions, s.trajectory.log_prob
    assert policy.action_dim == 12
    assert s.images.shape == (6, 3, 32, 32) and actions.shape == (6, 12) and log_prob.shape == (6, 1)
    assert bool(((actions > 0) & (actions < 1)).all())
    # image-major: rows 3..5 are image 1; replaying their actions on image 1 gives the same result
    ev = policy.evaluate_actions(x[1:2].expand(3, -1, -1, -1), actions[3:6])
    torch.testing.assert_close(ev.images, s.images[3:6], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ev.log_prob, log_prob[3:6, 0], atol=1e-4, rtol=1e-4)
    # the interface's evaluate of the whole recorded trajectory: ratio 1 at equal weights
    whole = policy.evaluate(x, s.trajectory)
    torch.testing.assert_close(whole.log_prob, log_prob, atol=1e-4, rtol=1e-4)
    assert torch.equal(whole.kl(whole), torch.zeros(6, 1))


def test_log_prob_and_entropy_agree_with_beta():
    policy, x = seeded_policy(), _images(b=3)
    actions = torch.rand(3, 12, generator=torch.Generator().manual_seed(5)) * 0.98 + 0.01
    ev = policy.evaluate_actions(x, actions)
    assert ev.alpha.shape == ev.beta.shape == (3, 12)
    assert bool((ev.alpha >= 1).all() and (ev.beta >= 1).all())  # beta_min_concentration = 1
    expected_lp = _beta_log_density(actions, ev.alpha, ev.beta).sum(1)
    torch.testing.assert_close(ev.log_prob, expected_lp, atol=1e-4, rtol=1e-5)
    expected_h = torch.distributions.Beta(ev.alpha, ev.beta).entropy().sum(1)
    torch.testing.assert_close(ev.entropy, expected_h)
    # a different action vector has a different density
    other = policy.evaluate_actions(x, actions.flip(0))
    assert not torch.allclose(other.log_prob, ev.log_prob)


def test_deterministic_is_reproducible_and_uses_beta_means():
    policy, x = seeded_policy(), _images()
    torch.manual_seed(123)
    a = policy.deterministic(x)
    torch.manual_seed(456)
    b = policy.deterministic(x)
    assert torch.equal(a, b)
    probe = policy.evaluate_actions(x, torch.full((2, 12), 0.3))
    means = policy.evaluate_actions(x, probe.alpha / (probe.alpha + probe.beta))
    # rate means depend only on the image; gate means also on features after earlier actions,
    # so replay the mean trajectory until it is a fixed point (two passes suffice)
    means = policy.evaluate_actions(x, means.alpha / (means.alpha + means.beta))
    means = policy.evaluate_actions(x, means.alpha / (means.alpha + means.beta))
    torch.testing.assert_close(means.images, a, atol=1e-5, rtol=1e-4)


def test_gradients_reach_heads_and_backbone():
    policy, x = seeded_policy(), _images()
    actions = torch.full((2, 12), 0.4)
    ev = policy.evaluate_actions(x, actions)
    (ev.log_prob.sum() + ev.entropy.sum() + ev.images.abs().mean()).backward()
    for name, p in policy.named_parameters():
        if name.startswith(("rate_heads", "fuse_heads")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert policy.backbone.output.weight.grad.abs().sum() > 0
    heads = {id(p) for p in policy.head_parameters()}
    assert heads.isdisjoint(id(p) for p in policy.backbone_parameters())
    assert len(heads) + sum(1 for _ in policy.backbone_parameters()) == sum(1 for _ in policy.parameters())


def test_sampling_gives_distinct_candidates_and_generator_reproduces():
    policy, x = _trained_like(seeded_policy()), _images(b=1)
    s1 = policy.sample(x, 4, generator=torch.Generator().manual_seed(7))
    s2 = policy.sample(x, 4, generator=torch.Generator().manual_seed(7))
    s3 = policy.sample(x, 4, generator=torch.Generator().manual_seed(8))
    a1, a2, a3 = (s.trajectory.actions for s in (s1, s2, s3))
    assert torch.equal(a1, a2) and torch.equal(s1.images, s2.images)
    assert not torch.equal(a1, a3)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(a1[i], a1[j])
            assert (s1.images[i] - s1.images[j]).abs().max() > 1e-4


def test_rate_actions_change_the_output_at_128px():
    policy = _trained_like(seeded_policy())
    x = _images(b=1, size=128)
    base = torch.full((1, 12), 0.5)
    out = policy.evaluate_actions(x, base).images
    gates = torch.full((1, 2), 0.5)
    for module, m in enumerate(policy.backbone.frequency_modules()):
        side = 128 // 2 ** (3 - module)  # fre1 sees H/8, fre2 H/4, fre3 H/2
        y = torch.randn(1, m.conv1.out_channels, side, side, generator=torch.Generator().manual_seed(module))
        for j in range(2):  # r_h, then r_l
            rates = [torch.full((1, 2), 0.5), torch.full((1, 2), 0.5)]
            rates[1][0, j] = 0.9
            outs = [m(x, y, lambda kind, _, r=r: r if kind == "rate" else gates) for r in rates]
            assert (outs[1] - outs[0]).abs().max() > 1e-5, (module, j)
            # and through the whole network, which is deterministic given the actions
            moved = base.clone()
            moved[0, module * 4 + j] = 0.9
            assert not torch.equal(policy.evaluate_actions(x, moved).images, out), (module, j)


def test_soft_mask_is_continuous_in_the_rate_on_small_maps():
    rates = torch.tensor([[0.30, 0.30], [0.31, 0.30], [0.30, 0.31], [0.9, 0.9]])
    mask = soft_lowpass_mask(rates, 16, 16)
    assert mask.shape == (4, 1, 16, 16)
    assert mask[0, 0, 0, 0] > 0.95  # DC is low frequency
    assert (mask[1] - mask[0]).abs().max() > 1e-3 and (mask[2] - mask[0]).abs().max() > 1e-3
    assert (mask[1] - mask[0]).abs().max() < 0.2  # small step in rate, small change
    assert mask[3].sum() > mask[0].sum()  # a larger rate keeps more of the spectrum
    # r_h acts along the vertical frequency axis
    assert (mask[1, 0, :, 0] - mask[0, 0, :, 0]).abs().max() > (mask[1, 0, 0, :] - mask[0, 0, 0, :]).abs().max()


def test_given_actions_are_validated():
    policy, x = seeded_policy(), _images()
    for bad in (torch.full((2, 11), 0.5), torch.full((2, 12), 1.0)):
        try:
            policy.evaluate_actions(x, bad)
        except ValueError as exc:
            assert "actions" in str(exc)
        else:
            raise AssertionError("bad actions accepted")


def test_frequency_module_init_defaults_to_adair_and_is_configurable():
    adair = RestorationPolicy(model_preset("micro")).backbone
    for m in adair.frequency_modules():
        assert torch.equal(m.para1, torch.zeros_like(m.para1))
        assert all(torch.equal(a.temperature, torch.ones_like(a.temperature)) for a in (m.channel_cross_l, m.channel_cross_h, m.channel_cross_agg))
    live = RestorationPolicy(model_preset("micro").model_copy(update={"fre_para1_init": 0.5, "fre_temperature_init": 8.0, "fre_mask_softness": 0.1})).backbone
    for m in live.frequency_modules():
        assert torch.equal(m.para1, torch.full_like(m.para1, 0.5)) and m.mask_softness == 0.1
        assert torch.equal(m.channel_cross_agg.temperature, torch.full_like(m.channel_cross_agg.temperature, 8.0))
