"""Degradation synthesis: reproducible by seed, in range, distinct per task and OOD variant."""

import pytest
import torch

from trainer.data.degradations import OOD_VARIANTS, stable_seed, synthesize, training_variants

CLEAN = torch.rand(3, 1, 1) * 0.6 + 0.2 + 0.2 * torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0))
ALL = [(f"{t}/{v}", f) for table in (training_variants([15, 25, 50]), OOD_VARIANTS) for t, vs in table.items() for v, f in vs.items()]


@pytest.mark.parametrize("name,degrade", ALL, ids=[n for n, _ in ALL])
def test_reproducible_by_seed_and_in_range(name, degrade):
    a = synthesize(CLEAN, degrade, 11)
    assert torch.equal(a, synthesize(CLEAN, degrade, 11))
    assert not torch.equal(a, synthesize(CLEAN, degrade, 12))
    assert a.shape == CLEAN.shape and a.min() >= 0 and a.max() <= 1
    assert (a - CLEAN).abs().mean() > 0.005  # it does degrade


def test_variants_differ_from_each_other():
    outs = {n: synthesize(CLEAN, f, 3) for n, f in ALL}
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(outs[a], outs[b], atol=1e-3), (a, b)


def test_noise_level_matches_sigma():
    flat = torch.full((3, 64, 64), 0.5)
    for sigma in (15, 25, 50):
        noisy = synthesize(flat, training_variants([sigma])["denoise"][f"sigma{sigma}"], 0)
        assert abs((noisy - flat).std().item() * 255 - sigma) < 0.1 * sigma


def test_stable_seed_is_fixed_and_distinguishes_parts():
    assert stable_seed(0, "derain/streaks/a") == stable_seed(0, "derain/streaks/a")
    assert stable_seed(0, "derain/streaks/a") != stable_seed(1, "derain/streaks/a")
    assert stable_seed(0, "a", 1) != stable_seed(0, "a1")
    assert stable_seed(0, "x") == 9056860805095488837  # the same in every process (not hash())


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        synthesize(torch.rand(1, 3, 8, 8), training_variants([15])["derain"]["streaks"], 0)
